//! Format parsing on format files recorded from real kernels.
use super::*;

/// sched/sched_switch on 6.18.44 (this host).
const SCHED_SWITCH_6_18: &str = r#"
name: sched_switch
ID: 372
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:char prev_comm[16];	offset:8;	size:16;	signed:0;
	field:pid_t prev_pid;	offset:24;	size:4;	signed:1;
	field:int prev_prio;	offset:28;	size:4;	signed:1;
	field:long prev_state;	offset:32;	size:8;	signed:1;
	field:char next_comm[16];	offset:40;	size:16;	signed:0;
	field:pid_t next_pid;	offset:56;	size:4;	signed:1;
	field:int next_prio;	offset:60;	size:4;	signed:1;

print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, (REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), "|", { 0x00000001, "S" }, { 0x00000002, "D" }, { 0x00000004, "T" }, { 0x00000008, "t" }, { 0x00000010, "X" }, { 0x00000020, "Z" }, { 0x00000040, "P" }, { 0x00000080, "I" }) : "R", REC->prev_state & (((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio
"#;

/// block/block_rq_issue on 6.18.44 (rwbs is 10 bytes, after ioprio).
const BLOCK_RQ_ISSUE_6_18: &str = r#"
name: block_rq_issue
ID: 2104
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:dev_t dev;	offset:8;	size:4;	signed:0;
	field:sector_t sector;	offset:16;	size:8;	signed:0;
	field:unsigned int nr_sector;	offset:24;	size:4;	signed:0;
	field:unsigned int bytes;	offset:28;	size:4;	signed:0;
	field:unsigned short ioprio;	offset:32;	size:2;	signed:0;
	field:char rwbs[10];	offset:34;	size:10;	signed:0;
	field:char comm[16];	offset:44;	size:16;	signed:0;
	field:__data_loc char[] cmd;	offset:60;	size:4;	signed:0;

print fmt: "%d,%d %s %u (%s) %llu + %u %s,%u,%u [%s]", ((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), REC->rwbs, REC->bytes, __get_str(cmd), (unsigned long long)REC->sector, REC->nr_sector, __print_symbolic((((REC->ioprio) >> 13) & (8 - 1)), { IOPRIO_CLASS_NONE, "none" }, { IOPRIO_CLASS_RT, "rt" }, { IOPRIO_CLASS_BE, "be" }, { IOPRIO_CLASS_IDLE, "idle" }, { IOPRIO_CLASS_INVALID, "invalid"}), (((REC->ioprio) >> 3) & ((1 << 10) - 1)), ((REC->ioprio) & ((1 << 3) - 1)), REC->comm
"#;

/// sched/sched_migrate_task on 6.18.44 (comm is a __data_loc string).
const SCHED_MIGRATE_6_18: &str = r#"
name: sched_migrate_task
ID: 371
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:__data_loc char[] comm;	offset:8;	size:4;	signed:0;
	field:pid_t pid;	offset:12;	size:4;	signed:1;
	field:int prio;	offset:16;	size:4;	signed:1;
	field:int orig_cpu;	offset:20;	size:4;	signed:1;
	field:int dest_cpu;	offset:24;	size:4;	signed:1;

print fmt: "comm=%s pid=%d prio=%d orig_cpu=%d dest_cpu=%d", __get_str(comm), REC->pid, REC->prio, REC->orig_cpu, REC->dest_cpu
"#;

/// block/block_rq_issue as Debian's 6.1 prints it (rwbs is 8 bytes, no ioprio).
const BLOCK_RQ_ISSUE_6_1: &str = "name: block_rq_issue
ID: 1187
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:char rwbs[8];\toffset:32;\tsize:8;\tsigned:0;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:56;\tsize:4;\tsigned:0;

print fmt: \"%d,%d %s %u (%s) %llu + %u [%s]\", ...
";

#[test]
fn parses_sched_switch_with_long_prev_state() {
    let f = parse_format(SCHED_SWITCH_6_18);
    assert_eq!(f["prev_pid"], Field { offset: 24, size: 4 });
    assert_eq!(f["prev_state"], Field { offset: 32, size: 8 });
    assert_eq!(f["next_pid"], Field { offset: 56, size: 4 });
    assert_eq!(f["prev_comm"], Field { offset: 8, size: 16 });
    assert_eq!(f["common_pid"], Field { offset: 4, size: 4 });
}

#[test]
fn parses_block_rq_issue_on_both_kernels() {
    let new = parse_format(BLOCK_RQ_ISSUE_6_18);
    assert_eq!(new["rwbs"], Field { offset: 34, size: 10 });
    assert_eq!(new["bytes"], Field { offset: 28, size: 4 });
    let old = parse_format(BLOCK_RQ_ISSUE_6_1);
    assert_eq!(old["rwbs"], Field { offset: 32, size: 8 });
    assert_eq!(old["cmd"], Field { offset: 56, size: 4 });
    assert!(!old.contains_key("ioprio"));
}

#[test]
fn parses_data_loc_fields() {
    let f = parse_format(SCHED_MIGRATE_6_18);
    assert_eq!(f["comm"], Field { offset: 8, size: 4 });
    assert_eq!(f["pid"], Field { offset: 12, size: 4 });
}

#[test]
fn rejects_missing_and_mis_sized_fields() {
    let f = parse_format(SCHED_SWITCH_6_18);
    assert!(matches!(require("sched/sched_switch", &f, "no_such", &[4]), Err(ProbeError::FormatField { .. })));
    assert!(matches!(require("sched/sched_switch", &f, "prev_state", &[4]), Err(ProbeError::FormatLayout { .. })));
}

#[test]
fn skips_garbage_lines() {
    let f = parse_format("field:int x;\toffset:abc;\tsize:4;\nfield:;offset:1;size:1;\nrandom\n\tfield:int y;\toffset:8;\tsize:4;\tsigned:1;");
    assert_eq!(f.len(), 1);
    assert_eq!(f["y"], Field { offset: 8, size: 4 });
}

#[test]
fn finds_tracefs_or_debugfs_in_mountinfo() {
    let tracefs = "24 30 0:22 / /sys/kernel/tracing rw,nosuid - tracefs nodev rw\n";
    assert_eq!(find_tracefs(tracefs), Some(PathBuf::from("/sys/kernel/tracing")));
    let none = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    assert_eq!(find_tracefs(none), None);
}
