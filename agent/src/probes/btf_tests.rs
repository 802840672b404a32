use super::*;

/// A BTF blob built by hand: types in order (ids from 1), then the string table.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
}

impl Builder {
    fn new() -> Self {
        Self { types: Vec::new(), strings: vec![0] }
    }

    fn name(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    fn header(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size_or_type: u32) {
        let name = self.name(name);
        let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        for word in [name, info, size_or_type] {
            self.types.extend_from_slice(&word.to_ne_bytes());
        }
    }

    fn int(&mut self, name: &str, size: u32) {
        self.header(name, KIND_INT, 0, false, size);
        self.types.extend_from_slice(&(size * 8).to_ne_bytes());
    }

    /// Members as (name, type id, bit offset, bit field size).
    fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) {
        let kind_flag = members.iter().any(|m| m.3 != 0);
        self.header(name, kind, members.len() as u32, kind_flag, size);
        for &(member, type_id, bits, bitfield) in members {
            let name = self.name(member);
            let offset = if kind_flag { (bitfield << 24) | bits } else { bits };
            for word in [name, type_id, offset] {
                self.types.extend_from_slice(&word.to_ne_bytes());
            }
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        let words = [24, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32];
        for word in words {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// task_struct { int pid; struct { struct sched_info sched_info; }; <bitfield>; ptr },
/// with sched_info reached through a typedef and a const.
fn sample() -> Vec<u8> {
    let mut b = Builder::new();
    b.int("unsigned long long", 8); // 1
    b.int("int", 4); // 2
    b.composite(KIND_STRUCT, "sched_info", 16, &[("pcount", 1, 0, 0), ("run_delay", 1, 64, 0)]); // 3
    b.header("sched_info_t", KIND_TYPEDEF, 0, false, 3); // 4
    b.header("", KIND_CONST, 0, false, 4); // 5
    b.composite(KIND_STRUCT, "", 16, &[("sched_info", 5, 0, 0)]); // 6: anonymous
    b.header("", KIND_PTR, 0, false, 6); // 7
    b.composite(KIND_STRUCT, "task_struct", 48, &[("pid", 2, 0, 0), ("", 6, 64, 0), ("flags", 2, 192, 3), ("cgroups", 7, 256, 0)]); // 8
    b.header("task_struct", 7, 0, false, 0); // 9: a forward declaration, skipped
    b.build()
}

#[test]
fn resolves_nested_members_through_anonymous_structs_and_typedefs() -> Result<(), BtfError> {
    let btf = Btf::parse(&sample())?;
    assert_eq!(btf.offset_of("task_struct.pid", 4)?, 0);
    assert_eq!(btf.offset_of("task_struct.sched_info.run_delay", 8)?, 16);
    assert_eq!(btf.offset_of("task_struct.cgroups", 8)?, 32);
    assert_eq!(btf.offset_of("sched_info.run_delay", 8)?, 8);
    Ok(())
}

#[test]
fn refuses_missing_members_wrong_sizes_bitfields_and_garbage() -> Result<(), BtfError> {
    let btf = Btf::parse(&sample())?;
    let missing = btf.offset_of("task_struct.sched_info.max_run_delay", 8).err().map(|e| e.to_string());
    assert_eq!(missing.as_deref(), Some("BTF: `task_struct.sched_info` has no member `max_run_delay`"));
    assert!(matches!(btf.offset_of("task_struct.pid", 8), Err(BtfError::Size { expected: 8, found: 4, .. })));
    assert!(matches!(btf.offset_of("task_struct.flags", 4), Err(BtfError::Unaligned { .. })));
    assert!(matches!(btf.offset_of("mm_struct.pgd", 8), Err(BtfError::NoStruct { .. })));
    assert!(matches!(Btf::parse(b"not btf at all, not at all"), Err(BtfError::Malformed { .. })));
    let mut truncated = sample();
    truncated.truncate(40);
    assert!(matches!(Btf::parse(&truncated), Err(BtfError::Malformed { .. })));
    Ok(())
}

/// The running kernel's own BTF, where it has one: every offset resolves, inside the
/// structs (task_struct is several KiB; the others are small).
#[test]
fn the_running_kernels_btf_has_every_offset_the_programs_read() -> Result<(), BtfError> {
    let path = Path::new(VMLINUX_BTF);
    if !path.exists() {
        println!("SKIP: {VMLINUX_BTF} is absent (kernel built without CONFIG_DEBUG_INFO_BTF)");
        return Ok(());
    }
    let offsets = Btf::from_file(path)?.kernel_offsets()?;
    println!("{offsets:?}");
    assert!(offsets.task_run_delay > offsets.task_pid.min(64) && offsets.task_run_delay < 16_384);
    assert_ne!(offsets.task_sum_exec_runtime, offsets.task_run_delay);
    assert!(offsets.kernfs_node_id < 512 && offsets.cgroup_kn < 1024 && offsets.css_set_dfl_cgrp < 1024);
    // Every kernel the scheduler probes load on (5.18+) has these fields.
    let block = Btf::from_file(path)?.block_kernel_offsets()?;
    println!("{block:?}");
    assert_ne!(block.request_sector, block.request_q);
    assert!(block.request_q < 512 && block.queue_disk < 4096 && block.disk_major < 512 && block.disk_first_minor < 512);
    Ok(())
}
