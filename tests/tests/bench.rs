//! Keeps `bench/run` from rotting: a tiny run that must print every figure. Not a measurement.

use postecole_tests::workspace_root;

#[test]
fn bench_run_prints_every_figure() {
    let out = std::process::Command::new(workspace_root().join("bench/run"))
        .arg("--quick")
        .env("BENCH_N", "30")
        .env("BENCH_PROFILE", "debug")
        .output()
        .expect("bench/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in [
        "postecole_msgs_per_s",
        "postfix_msgs_per_s",
        "postfix_drain_msgs_per_s",
        "msmtp_msgs_per_s",
        "sink_ceiling_msgs_per_s",
        "ratio_vs_postfix",
        "ratio_vs_postfix_drain",
        "ratio_vs_msmtp",
        "fraction_of_ceiling",
        "enqueue_batch_msgs_per_s",
        "send_p50_ms",
        "send_p99_ms",
        "idle_rss_mib",
        "rss_10k_queued_mib",
        "merge_200k_pdf_msgs_per_s",
        "honest_p99_ms_under_attack",
        "peak_rss_mib_under_attack",
        "starttls_msgs_per_s",
        "tls465_msgs_per_s",
        "get_message_p50_ms",
        "find_10_ids_p50_ms",
        "door_msgs_per_s",
        "mailctl_send_msgs_per_s",
        "postfix_sendmail_msgs_per_s",
        "ratio_door_vs_postfix_sendmail",
    ]
    .into_iter()
    .chain(
        // The network path needs a namespace and an NFQUEUE rule: root only (as in CI).
        nix::unistd::geteuid()
            .is_root()
            .then_some([
                "net20_rtt_ms",
                "net20_postfix_drain_msgs_per_s",
                "net20_postecole_drain_msgs_per_s",
                "net20_ratio",
                "net20_fraction_of_rt_limit",
                "net20_postfix_drain_msgs_per_s_chunking",
                "net20_postecole_drain_msgs_per_s_chunking",
                "net20_ratio_chunking",
                "net20_fraction_of_rt_limit_chunking",
            ])
            .into_iter()
            .flatten(),
    ) {
        let value = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{stdout}"));
        let number: f64 = value.parse().unwrap_or_else(|_| panic!("{key}: {value}"));
        assert!(number > 0.0, "{key} is {number}");
    }
}
