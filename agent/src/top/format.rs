//! Short text for table cells. Missing values print as `-` or `n/a`, never as 0.

use truce_common::model::{Setting, Timestamp};

pub fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

pub fn opt_u(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

pub fn bytes(v: Option<u64>) -> String {
    let Some(n) = v else { return "-".into() };
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut x = n as f64;
    let mut i = 0;
    while x >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n}B") } else { format!("{x:.1}{}", UNITS[i]) }
}

/// A compact number: 950, 1.2k, 34k, 1.5M.
pub fn compact(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Cut to `w` characters, marking the cut with `…`.
pub fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        format!("{}…", s.chars().take(w - 1).collect::<String>())
    }
}

/// Cut to `w` characters keeping the end, where a cgroup name is most specific
/// (`…/inspect/victim` rather than `truce-test-26…`).
pub fn clip_left(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        format!("…{}", s.chars().skip(n - (w - 1)).collect::<String>())
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a sparkline scaled to `max` (rows of one table share it, so
/// their heights compare); gaps are blanks.
pub fn spark(values: &[Option<f32>], width: usize, max: f32) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let mut s: String = tail
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(x) if max <= 0.0 || !x.is_finite() => BARS[0],
            Some(x) => BARS[(((x.max(0.0) / max) * 7.0).round() as usize).min(7)],
        })
        .collect();
    // Right-align: the newest value sits at the right edge.
    let pad = width.saturating_sub(s.chars().count());
    s.insert_str(0, &" ".repeat(pad));
    s
}

/// `hh:mm:ss` (UTC) of a timestamp.
pub fn clock(t: Timestamp) -> String {
    let s = (t.0 / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Seconds from `now` until `t` (negative: ago), as `12s`, `-3s`, `4m`.
pub fn until(t: Timestamp, now: Timestamp) -> String {
    let d = t.0 as i64 - now.0 as i64;
    let s = d / 1000;
    if s.abs() >= 120 { format!("{}m", s / 60) } else { format!("{s}s") }
}

pub fn setting(s: &Setting) -> String {
    match s {
        Setting::CpuMax { millicores, .. } => format!("cpu.max {millicores}m"),
        Setting::CpuWeight { weight } => format!("cpu.weight {weight}"),
        Setting::MemoryHigh { bytes: b } => format!("memory.high {}", bytes(Some(*b))),
        Setting::IoMax { dev, rbps, wbps } => format!("io.max {dev} r={} w={}", bytes(*rbps), bytes(*wbps)),
        Setting::IoWeight { dev, weight } => format!("io.weight {dev} {weight}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_scales_to_the_window_and_keeps_gaps() {
        assert_eq!(spark(&[Some(0.0), Some(1.0), None, Some(0.5)], 4, 1.0), "▁█ ▅");
        assert_eq!(spark(&[Some(2.0)], 3, 2.0), "  █");
        assert_eq!(spark(&[Some(0.2)], 1, 2.0), "▂", "scaled to the shared maximum");
        assert_eq!(spark(&[], 2, 1.0), "  ");
    }

    #[test]
    fn missing_values_are_dashes_not_zeros() {
        assert_eq!(opt_f(None, 2), "-");
        assert_eq!(bytes(None), "-");
        assert_eq!(bytes(Some(3 << 20)), "3.0M");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip_left("slice/victim", 7), "…victim");
    }
}
