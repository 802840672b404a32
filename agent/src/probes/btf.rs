//! Kernel struct field offsets from the kernel's BTF (/sys/kernel/btf/vmlinux), so the
//! scheduler programs read task_struct and friends at this kernel's offsets.
//!
//! A small reader of the BTF format (include/uapi/linux/btf.h): it walks the type table
//! once and resolves dotted member paths. Written here rather than taken from a crate
//! because aya-obj keeps its type walk private and btf-rs is LGPL, which this MIT/Apache
//! workspace does not link.
use std::path::{Path, PathBuf};

use truce_common::abi::{BlockKernelOffsets, KernelOffsets};

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("failed to read the kernel's BTF at {path} (needs CONFIG_DEBUG_INFO_BTF)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {reason}")]
    Malformed { reason: &'static str },
    #[error("BTF has no struct `{name}`")]
    NoStruct { name: String },
    #[error("BTF: `{path}` has no member `{member}`")]
    NoMember { path: String, member: String },
    #[error("BTF: `{path}` is a bit field or not byte aligned")]
    Unaligned { path: String },
    #[error("BTF: `{path}` is {found} bytes, expected {expected}")]
    Size { path: String, expected: u32, found: u32 },
}

struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset in the enclosing struct or union.
    bit_offset: u32,
    bitfield: bool,
}

struct Type {
    name_off: u32,
    kind: u32,
    /// Size in bytes (int, struct, union, enum) or the referred type id (ptr, typedef, ...).
    size_or_type: u32,
    members: Vec<Member>,
}

/// The type table of one BTF blob.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data.get(at..at + 4).ok_or(BtfError::Malformed { reason: "truncated" })?;
    Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.into(), source })?;
        Self::parse(&data)
    }

    /// Parse a raw (not ELF-wrapped) BTF blob in this machine's byte order.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Malformed { reason: "bad magic (or foreign byte order)" });
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::Malformed { reason: "section offset overflows" })?;
            data.get(start..start + len).ok_or(BtfError::Malformed { reason: "section past the end" })
        };
        let table = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut types = vec![Type { name_off: 0, kind: 0, size_or_type: 0, members: Vec::new() }];
        let mut at = 0;
        while at < table.len() {
            let (name_off, info, size_or_type) = (u32_at(table, at)?, u32_at(table, at + 4)?, u32_at(table, at + 8)?);
            at += 12;
            let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31 != 0);
            let mut members = Vec::new();
            at += match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + 12 * i;
                        let raw = u32_at(table, m + 8)?;
                        let (bit_offset, bitfield) = if kind_flag { (raw & 0xff_ffff, raw >> 24 != 0) } else { (raw, false) };
                        members.push(Member { name_off: u32_at(table, m)?, type_id: u32_at(table, m + 4)?, bit_offset, bitfield });
                    }
                    12 * vlen
                }
                // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
                2 | 7..=12 | 16 | KIND_TYPE_TAG => 0,
                _ => return Err(BtfError::Malformed { reason: "unknown type kind" }),
            };
            types.push(Type { name_off, kind, size_or_type, members });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::Malformed { reason: "type id out of range" })
    }

    /// `id` with typedefs and qualifiers stripped.
    fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        // A bound instead of cycle detection: real chains are a few links long.
        for _ in 0..32 {
            let ty = self.get(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = ty.size_or_type,
                _ => return Ok(id),
            }
        }
        Err(BtfError::Malformed { reason: "typedef chain too long" })
    }

    /// Size in bytes of the (resolved) type `id`.
    fn size(&self, id: u32) -> Result<u32, BtfError> {
        let ty = self.get(self.resolve(id)?)?;
        Ok(match ty.kind {
            KIND_PTR => 8,
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => ty.size_or_type,
            _ => 0,
        })
    }

    /// The member `name` of struct/union `id`, searched through anonymous members too:
    /// (bit offset from the start of `id`, member).
    fn member(&self, id: u32, name: &[u8]) -> Result<Option<(u32, &Member)>, BtfError> {
        for m in &self.get(id)?.members {
            if self.name(m.name_off) == name {
                return Ok(Some((m.bit_offset, m)));
            }
            if m.name_off == 0 {
                let inner = self.resolve(m.type_id)?;
                if matches!(self.get(inner)?.kind, KIND_STRUCT | KIND_UNION)
                    && let Some((off, found)) = self.member(inner, name)?
                {
                    return Ok(Some((m.bit_offset + off, found)));
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of a dotted member path from the start of the struct named first, e.g.
    /// `task_struct.sched_info.run_delay`, checked to be `size` bytes and byte aligned.
    pub fn offset_of(&self, path: &str, size: u32) -> Result<u32, BtfError> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut id = (1..self.types.len() as u32)
            .find(|&id| {
                let ty = &self.types[id as usize];
                ty.kind == KIND_STRUCT && !ty.members.is_empty() && self.name(ty.name_off) == root.as_bytes()
            })
            .ok_or_else(|| BtfError::NoStruct { name: root.to_owned() })?;
        let mut bits = 0u32;
        let mut walked = root.to_owned();
        for part in parts {
            let (off, member) = self
                .member(id, part.as_bytes())?
                .ok_or_else(|| BtfError::NoMember { path: walked.clone(), member: part.to_owned() })?;
            walked = format!("{walked}.{part}");
            if member.bitfield {
                return Err(BtfError::Unaligned { path: walked });
            }
            bits += off;
            id = self.resolve(member.type_id)?;
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Unaligned { path: walked });
        }
        let found = self.size(id)?;
        if found != size {
            return Err(BtfError::Size { path: walked, expected: size, found });
        }
        Ok(bits / 8)
    }

    /// The offsets the scheduler programs read (see [`KernelOffsets`]).
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            task_pid: self.offset_of("task_struct.pid", 4)?,
            task_cgroups: self.offset_of("task_struct.cgroups", 8)?,
            task_sum_exec_runtime: self.offset_of("task_struct.se.sum_exec_runtime", 8)?,
            task_run_delay: self.offset_of("task_struct.sched_info.run_delay", 8)?,
            css_set_dfl_cgrp: self.offset_of("css_set.dfl_cgrp", 8)?,
            cgroup_kn: self.offset_of("cgroup.kn", 8)?,
            kernfs_node_id: self.offset_of("kernfs_node.id", 8)?,
            _pad: 0,
        })
    }

    /// The offsets the BTF-typed block completion reads (see [`BlockKernelOffsets`]).
    pub fn block_kernel_offsets(&self) -> Result<BlockKernelOffsets, BtfError> {
        Ok(BlockKernelOffsets {
            request_sector: self.offset_of("request.__sector", 8)?,
            request_q: self.offset_of("request.q", 8)?,
            queue_disk: self.offset_of("request_queue.disk", 8)?,
            disk_major: self.offset_of("gendisk.major", 4)?,
            disk_first_minor: self.offset_of("gendisk.first_minor", 4)?,
            _pad: [0; 3],
        })
    }
}

#[cfg(test)]
#[path = "btf_tests.rs"]
mod tests;
