use super::*;

const MINIMAL: &str = r#"
[scenario]
name = "t"

[[backend]]
name = "s0"

[[backend]]
name = "s1"

[[priority]]
backends = ["s0"]

[[priority]]
backends = ["s1"]

[client]
script = [{ op = "rpc", expect = "s0" }, { op = "close" }]
"#;

#[test]
fn minimal_scenario_gets_defaults() {
    let s = Scenario::parse("t.toml", MINIMAL).unwrap();
    assert_eq!(s.backends.len(), 2);
    assert_eq!(s.priorities[1].backends, vec![1]);
    assert_eq!(s.balancer.init_timeout, 10 * SEC);
    assert_eq!(s.balancer.cache_timeout, 900 * SEC);
    assert_eq!(s.balancer.child_policy, ChildPolicy::RoundRobin);
    assert_eq!(s.client.leak_check_grace, 10 * SEC);
    assert_eq!(s.run.variants, Variant::ALL.to_vec());
    assert_eq!(
        s.client.steps[0],
        ClientStep::Rpc {
            expect: Some(0),
            wait_for_ready: false,
            timeout: 10 * SEC
        }
    );
}

fn error_of(src: &str) -> (usize, usize, String) {
    match Scenario::parse("t.toml", src) {
        Err(ScenarioError::Invalid {
            line,
            column,
            message,
            ..
        }) => (line, column, message),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn errors_point_at_the_offending_value() {
    let src = MINIMAL.replace(r#"backends = ["s1"]"#, r#"backends = ["s9"]"#);
    let (line, column, message) = error_of(&src);
    assert_eq!((line, column), (15, 13), "{message}");
    assert!(message.contains("unknown backend `s9`"));
}

#[test]
fn op_keys_are_checked() {
    let src = MINIMAL.replace(r#"{ op = "close" }"#, r#"{ op = "close", backend = "s0" }"#);
    let (_, _, message) = error_of(&src);
    assert!(message.contains("does not take `backend`"), "{message}");
    let src = MINIMAL.replace(r#"{ op = "rpc", expect = "s0" }, "#, "");
    assert!(Scenario::parse("t.toml", &src).is_ok());
    let src = MINIMAL.replace(r#", { op = "close" }"#, "");
    assert!(error_of(&src).2.contains("does not close"));
}

#[test]
fn set_param_by_dotted_key() {
    let mut s = Scenario::parse("t.toml", MINIMAL).unwrap();
    s.set_param("balancer.cache_timeout", "30s").unwrap();
    s.set_param("runtime.pause_prob", "0.25").unwrap();
    s.set_param("runtime.gomaxprocs", "8").unwrap();
    s.set_param("runtime.pause", "exp(1ms)").unwrap();
    assert_eq!(s.balancer.cache_timeout, 30 * SEC);
    assert_eq!(s.runtime.pause_prob, 0.25);
    assert_eq!(s.runtime.gomaxprocs, 8);
    assert_eq!(s.runtime.pause, Dist::Exp { mean: MS });
    assert!(matches!(
        s.set_param("runtime.pause_prob", "2"),
        Err(ScenarioError::BadParam { .. })
    ));
    assert!(matches!(
        s.set_param("balancer.cache_timeout", "-1s"),
        Err(ScenarioError::BadParam { .. })
    ));
    assert!(matches!(
        s.set_param("balancer.nope", "1"),
        Err(ScenarioError::UnknownParam { .. })
    ));
}

#[test]
fn shipped_scenarios_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with('#'),
                "{} must start with a comment saying what it models",
                path.display()
            );
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 5);
}

#[test]
fn a_seed_takes_the_whole_u64_range_quoted_or_not() {
    let with =
        |seed: &str| Scenario::parse("t.toml", &format!("{MINIMAL}\n[run]\nseed = {seed}\n"));
    assert_eq!(with("7").unwrap().run.seed, 7);
    assert_eq!(
        with("\"12612280629371687117\"").unwrap().run.seed,
        12_612_280_629_371_687_117
    );
    assert_eq!(with("\"18446744073709551615\"").unwrap().run.seed, u64::MAX);
    let e = with("-1").unwrap_err().to_string();
    assert!(e.contains("t.toml:") && e.contains("is negative"), "{e}");
    let e = with("\"18446744073709551616\"").unwrap_err().to_string();
    assert!(
        e.contains("not a whole number") && e.contains("quote it"),
        "{e}"
    );
    // An unquoted seed above i64::MAX is a TOML error; the message says to quote it.
    let e = with("12612280629371687117").unwrap_err().to_string();
    assert!(e.contains("t.toml:") && e.contains("quote a seed"), "{e}");
}

#[test]
fn connect_params_default_to_the_real_tests_and_take_a_preset_and_overrides() {
    use crate::grpc::subconn::ConnectParams;
    let s = Scenario::parse("t.toml", MINIMAL).unwrap();
    assert_eq!(s.connect, ConnectParams::fast());
    let src = format!("{MINIMAL}\n[connect]\npreset = \"grpc\"\n");
    assert_eq!(
        Scenario::parse("t.toml", &src).unwrap().connect,
        ConnectParams::default()
    );
    let src = format!(
        "{MINIMAL}\n[connect]\nbase_delay = \"1s\"\nmultiplier = 2.0\njitter = 0.1\nmax_delay = \"30s\"\nmin_connect_timeout = \"5s\"\n"
    );
    let c = Scenario::parse("t.toml", &src).unwrap().connect;
    assert_eq!(
        (c.backoff.base_delay, c.backoff.multiplier, c.backoff.jitter),
        (SEC, 2.0, 0.1)
    );
    assert_eq!(
        (c.backoff.max_delay, c.min_connect_timeout),
        (30 * SEC, 5 * SEC)
    );
    let mut s = Scenario::parse("t.toml", MINIMAL).unwrap();
    s.set_param("connect.min_connect_timeout", "2s").unwrap();
    s.set_param("connect.multiplier", "1.6").unwrap();
    assert_eq!(
        (s.connect.min_connect_timeout, s.connect.backoff.multiplier),
        (2 * SEC, 1.6)
    );
    assert!(s.set_param("connect.jitter", "1.5").is_err());
    assert!(s.set_param("connect.multiplier", "-1").is_err());
}

#[test]
fn bad_connect_params_are_refused_where_they_are_written() {
    // MINIMAL ends on line 19; [connect] is line 20 and its key line 21.
    for (line, needle) in [
        ("preset = \"fast\"", "unknown connect preset `fast`"),
        ("multiplier = -1.0", "multiplier = -1 cannot be negative"),
        ("jitter = 2.0", "jitter = 2 is not a probability"),
        ("base_delay = \"soon\"", "base_delay"),
    ] {
        let src = format!("{MINIMAL}\n[connect]\n{line}\n");
        let (at, _, message) = error_of(&src);
        assert_eq!(at, 21, "{line}: {message}");
        assert!(message.contains(needle), "{line}: {message}");
    }
}

/// `MINIMAL` with a three-line script whose second line is `step`.
fn with_push(step: &str) -> String {
    MINIMAL.replace(
        r#"script = [{ op = "rpc", expect = "s0" }, { op = "close" }]"#,
        &format!("script = [\n  {{ op = \"rpc\", expect = \"s0\" }},\n  {step},\n  {{ op = \"close\" }},\n]"),
    )
}

#[test]
fn update_config_parses_with_and_without_a_child_policy() {
    let s = Scenario::parse(
        "t.toml",
        &with_push(
            r#"{ op = "update_config", priorities = [["s1"], ["s0"]], child_policy = "pick_first" }"#,
        ),
    )
    .unwrap();
    assert_eq!(
        s.client.steps[1],
        ClientStep::UpdateConfig {
            priorities: vec![vec![1], vec![0]],
            child_policy: Some(ChildPolicy::PickFirst),
        }
    );
    let s = Scenario::parse(
        "t.toml",
        &with_push(r#"{ op = "update_config", priorities = [["s1", "s0"]] }"#),
    )
    .unwrap();
    assert_eq!(
        s.client.steps[1],
        ClientStep::UpdateConfig {
            priorities: vec![vec![1, 0]],
            child_policy: None,
        }
    );
}

#[test]
fn bad_update_config_is_refused_where_it_is_written() {
    // (step, the text the error must point at (its last occurrence), message)
    let cases = [
        (
            r#"{ op = "update_config", priorities = [["s1"], ["s9"]] }"#,
            r#""s9""#,
            "unknown backend `s9`",
        ),
        (
            r#"{ op = "update_config", priorities = [["s1"]], child_policy = "wrr" }"#,
            r#""wrr""#,
            "unknown child policy `wrr`",
        ),
        (
            r#"{ op = "update_config", priorities = [["s1"]], child_policy = "ring_hash" }"#,
            r#""ring_hash""#,
            "no ring_hash policy",
        ),
        (
            r#"{ op = "update_config", priorities = [] }"#,
            "[]",
            "`priorities` of `update_config` is empty",
        ),
        (
            r#"{ op = "update_config", priorities = [["s1"], []] }"#,
            "[]]",
            "priority p1 of `update_config` has no backends",
        ),
        (
            r#"{ op = "update_config", priorities = [["s1"], ["s1"]] }"#,
            r#""s1""#,
            "backend `s1` is already in priority p0",
        ),
        (
            r#"{ op = "update_config" }"#,
            r#""update_config""#,
            "op `update_config` needs `priorities`",
        ),
        (
            r#"{ op = "rpc", priorities = [["s1"]] }"#,
            "[[",
            "op `rpc` does not take `priorities`",
        ),
    ];
    for (step, at, needle) in cases {
        let src = with_push(step);
        let offset = src.find(step).unwrap() + step.rfind(at).unwrap();
        let want_line = src[..offset].matches('\n').count() + 1;
        let want_column = offset - src[..offset].rfind('\n').unwrap();
        let (line, column, message) = error_of(&src);
        assert_eq!(
            (line, column),
            (want_line, want_column),
            "{step}: {message}"
        );
        assert!(message.contains(needle), "{step}: {message}");
    }
}

#[test]
fn the_test_logger_is_off_unless_the_client_table_says_so() {
    assert!(
        !Scenario::parse("t.toml", MINIMAL)
            .unwrap()
            .client
            .test_logger
    );
    let on = MINIMAL.replace("[client]\n", "[client]\ntest_logger = true\n");
    assert!(Scenario::parse("t.toml", &on).unwrap().client.test_logger);
    // Not a boolean: refused at its line.
    let bad = MINIMAL.replace("[client]\n", "[client]\ntest_logger = \"yes\"\n");
    let e = Scenario::parse("t.toml", &bad).unwrap_err().to_string();
    assert!(e.contains("t.toml:18:15"), "{e}");
    assert!(e.contains("expected a boolean"), "{e}");
}
