use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "test.toml")
}

/// The error and its sources, as `main` prints them with `{err:#}`.
fn chain(err: &ConfigError) -> String {
    let mut s = err.to_string();
    let mut src = std::error::Error::source(err);
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

#[test]
fn the_example_parses_and_matches() {
    let c = parse(EXAMPLE).unwrap_or_else(|e| panic!("{}", chain(&e)));
    let nginx = c.policy_for("/system.slice/nginx.service");
    assert_eq!(nginx.priority, 50);
    assert_eq!(nginx.slo.len(), 3);
    assert_eq!(nginx.cpu, Bounds { floor: Some(200), ceiling: Some(2000) });
    assert_eq!(c.policy_for("/batch.slice/job-1.scope").budget_credits_per_hour, 5.0);
    assert_eq!(c.policy_for("/user.slice").priority, 1);
    assert!(c.rule_for("/user.slice").is_none());
    let file = c.rule_for("/system.slice/nginx.service").and_then(|r| r.latency_file.clone());
    assert_eq!(file, Some(PathBuf::from("/run/nginx/latency_p99_ms")));
}

#[test]
fn unknown_keys_are_named() {
    let e = match parse("[[workload]]\nmatch = \"/a\"\npriorty = 3\n") {
        Err(e) => chain(&e),
        Ok(c) => panic!("accepted {c:?}"),
    };
    assert!(e.contains("priorty"), "{e}");
    let e = match parse("[[workload]]\nmatch = \"/a\"\n[workload.slo]\nrq_p99 = 1.0\n") {
        Err(e) => chain(&e),
        Ok(c) => panic!("accepted {c:?}"),
    };
    assert!(e.contains("rq_p99"), "{e}");
    assert!(parse("[default]\n").is_err_and(|e| chain(&e).contains("default")));
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[[workload]]\nmatch = \"/a\"\npriority = 0\n", "workload[0].priority"),
        ("[[workload]]\nmatch = \"a\"\n", "workload[0].match"),
        ("[[workload]]\nmatch = \"/a\"\n[workload.cpu]\nfloor_millicores = 5\nceiling_millicores = 1\n", "workload[0].cpu"),
        ("[[workload]]\nmatch = \"/a\"\n[workload.slo]\nlatency_file = \"/x\"\n", "workload[0].slo.latency_ceiling_ms"),
        ("[[workload]]\nmatch = \"/a\"\n[workload.slo]\npsi_io_full_avg10 = 140.0\n", "workload[0].slo.psi_io_full_avg10"),
        ("[defaults]\nbudget_credits_per_hour = -1.0\n", "defaults.budget_credits_per_hour"),
    ];
    for (text, key) in cases {
        match parse(text) {
            Err(e @ ConfigError::Invalid { .. }) => assert!(chain(&e).contains(key), "{key}: {}", chain(&e)),
            other => panic!("{key}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn exact_path_beats_an_earlier_glob() {
    let c = parse("[[workload]]\nmatch = \"/s/*\"\npriority = 2\n[[workload]]\nmatch = \"/s/db\"\npriority = 9\n");
    let c = c.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(c.policy_for("/s/db").priority, 9);
    assert_eq!(c.policy_for("/s/web").priority, 2);
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let e = Config::load(Path::new("/nonexistent/truce-workloads.toml"));
    assert!(matches!(&e, Err(ConfigError::Read { path, .. }) if path.ends_with("truce-workloads.toml")), "{e:?}");
}
