//! The `edgeroom` CLI against a real `wrangler dev`: every command, and bad input (a wrong token,
//! bad names, a body that is not JSON) giving a clear message and the documented exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use edgeroom_tests::{repo_root, Server};
use serde_json::Value;

const ADMIN_KEY: &str = "cli-admin-key";

/// Builds the CLI once per test process and returns its path.
fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "edgeroom-client", "--bin", "edgeroom"])
                .current_dir(repo_root())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the CLI failed");
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo_root().join("target"));
            target.join("debug/edgeroom")
        })
        .clone()
}

struct Cli {
    url: String,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env("EDGEROOM_URL", &self.url)
            .env_remove("EDGEROOM_TOKEN")
            .env_remove("EDGEROOM_ADMIN_KEY")
            .env_remove("EDGEROOM_TENANT_SECRET")
            .env_remove("RUST_LOG");
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn edgeroom");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.unwrap_or_default().as_bytes()).expect("write stdin");
        drop(input);
        let Output { status, stdout, stderr } = child.wait_with_output().expect("edgeroom runs");
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        eprintln!(
            "$ edgeroom {}\n  exit {}\n  stdout: {:?}\n  stderr: {:?}",
            args.join(" "),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "edgeroom {args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a command that must fail with `code` and an `error:` message on stderr (`edgeroom:
    /// error: …` from the command, or clap's `error: …` for arguments it cannot parse).
    fn fails(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>, code: i32, says: &str) {
        let run = self.run_with(args, env, stdin);
        assert_eq!(run.code, code, "edgeroom {args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("edgeroom: error: ") || run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
        assert!(
            run.stderr.to_lowercase().contains(&says.to_lowercase()),
            "{args:?} should say {says:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_and_bad_input_fails_clearly() {
    let server = Server::start_with_vars(&[
        ("AUTH_MODE", "dev"),
        ("TENANT_SECRETS", r#"{"acme":"acme-secret-0123456789"}"#),
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "500"),
        ("IDLE_SNAPSHOT_MS", "1000"),
        ("RATE_LIMIT_PER_SEC", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ])
    .await;
    let cli = Cli { url: server.http_url("") };
    binary();

    // publish: an argument, then stdin lines; bad JSON publishes nothing.
    assert_eq!(cli.ok(&["publish", "acme/cli", r#"{"text":"hi"}"#]), "1\n");
    let run = cli.run_with(
        &["publish", "acme/cli", "--topic", "chat"],
        &[],
        Some("\"a\"\n\n[1,2]\n{\"b\":true}\n"),
    );
    assert_eq!((run.code, run.lines()), (0, vec!["2", "3", "4"]), "{}", run.stderr);
    cli.fails(&["publish", "acme/cli", "{not json"], &[], None, 2, "the body is not JSON");
    cli.fails(&["publish", "acme/cli"], &[], Some("1\nnope\n"), 2, "line 2 of stdin is not JSON");

    // tail (JSON and readable) and history.
    let tailed = cli.ok(&["tail", "acme/cli", "--from", "0", "--count", "4", "--json"]);
    let seqs: Vec<u64> =
        tailed.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(
        cli.ok(&["tail", "acme/cli", "--from", "1", "--count", "1"]),
        "#2 connection 2 [chat]: \"a\"\n".replace("connection 2", &tail_sender(&tailed))
    );
    assert_eq!(cli.ok(&["history", "acme/cli", "--after", "2"]).lines().count(), 2);
    let json_frames = cli.ok(&["--json-frames", "tail", "acme/cli", "--from", "3", "--count", "1", "--json"]);
    assert_eq!(
        json_frames,
        tailed.lines().nth(3).unwrap().to_owned() + "\n",
        "JSON frames give the same events"
    );

    // state set/get/delete.
    assert_eq!(cli.ok(&["state", "set", "acme/cli", "title", r#""Planning""#]), "5\n");
    assert_eq!(cli.ok(&["state", "get", "acme/cli", "title"]), "\"Planning\"\n");
    assert_eq!(cli.ok(&["state", "get", "acme/cli"]), "{\"title\":\"Planning\"}\n");
    assert_eq!(cli.ok(&["state", "delete", "acme/cli", "title"]), "6\n");
    cli.fails(&["state", "get", "acme/cli", "title"], &[], None, 1, "has no key");
    cli.fails(&["state", "set", "acme/cli", "title", "Planning"], &[], None, 2, "the value is not JSON");

    // presence.
    let members = cli.ok(&["presence", "acme/cli", "--set", r#"{"name":"ada"}"#]);
    assert!(members.lines().any(|l| l.contains(r#""name":"ada""#)), "{members}");

    // counters.
    assert_eq!(cli.ok(&["counter", "add", "acme/likes", "5"]), "5\n");
    assert_eq!(cli.ok(&["counter", "add", "acme/likes", "-2"]), "3\n");
    assert_eq!(cli.ok(&["counter", "get", "acme/likes"]), "3\n");
    assert_eq!(cli.ok(&["counter", "watch", "acme/likes", "--count", "1"]), "3 (version 2)\n");
    assert_eq!(cli.ok(&["counter", "set", "acme/likes", "9"]), "9\n");
    assert_eq!(cli.ok(&["counter", "reset", "acme/likes"]), "0\n");
    cli.fails(&["counter", "add", "acme/likes", "five"], &[], None, 2, "invalid value");

    // tokens: signed here or by the admin API; a wrong token is exit 3.
    let signed = cli.ok(&[
        "token",
        "mint",
        "acme",
        "--sub",
        "ada",
        "--grant",
        "cli=read",
        "--secret",
        "acme-secret-0123456789",
    ]);
    let token = signed.trim();
    assert_eq!(cli.run_with(&["history", "acme/cli"], &[("EDGEROOM_TOKEN", token)], None).code, 0);
    let minted = cli.run_with(
        &["token", "mint", "acme", "--sub", "bo", "--grant", "cli=read,write"],
        &[("EDGEROOM_ADMIN_KEY", ADMIN_KEY)],
        None,
    );
    assert_eq!(minted.code, 0, "{}", minted.stderr);
    assert_eq!(minted.stdout.trim().split('.').count(), 3, "a JWT");
    cli.fails(&["history", "acme/cli", "--token", "not-a-token"], &[], None, 3, "401");
    cli.fails(&["publish", "acme/cli", "1"], &[("EDGEROOM_TOKEN", token)], None, 3, "forbidden");
    cli.fails(
        &["token", "mint", "acme", "--sub", "x", "--grant", "cli=fly", "--secret", "s"],
        &[],
        None,
        2,
        "unknown right",
    );
    cli.fails(&["token", "mint", "acme", "--sub", "x", "--grant", "cli=read"], &[], None, 3, "--secret");

    // names.
    cli.fails(&["tail", "acme/bad room"], &[], None, 2, "may only contain");
    cli.fails(&["history", "lobby"], &[], None, 2, "tenant/name");
    cli.fails(&["counter", "get", "acme/no*stars"], &[], None, 2, "may only contain");

    // admin: rooms, snapshots (once the flush wrote one), restore; keys are checked.
    let admin = [("EDGEROOM_ADMIN_KEY", ADMIN_KEY)];
    let mut snapshots = String::new();
    for _ in 0..40 {
        let run = cli.run_with(&["admin", "snapshots", "acme/cli"], &admin, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        snapshots = run.stdout;
        if !snapshots.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!snapshots.is_empty(), "a snapshot was flushed");
    let rooms = cli.run_with(&["admin", "rooms", "acme"], &admin, None);
    assert!(rooms.stdout.contains("\"room\":\"cli\""), "{}", rooms.stdout);
    let restored = cli.run_with(&["admin", "restore", "acme/cli"], &admin, None);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert!(restored.stdout.contains("restored_seq"), "{}", restored.stdout);
    assert_eq!(cli.run_with(&["admin", "flush", "acme/cli"], &admin, None).stdout, "{\"affected\":1}\n");
    assert_eq!(cli.run_with(&["admin", "close", "acme/cli"], &admin, None).code, 0);
    cli.fails(&["admin", "kick", "acme/cli", "999999"], &admin, None, 2, "404");
    cli.fails(&["admin", "rooms", "acme"], &[], None, 3, "--admin-key");
    cli.fails(&["admin", "rooms", "acme"], &[("EDGEROOM_ADMIN_KEY", "wrong")], None, 3, "401");

    // load: every acknowledged message reaches every subscriber; the report is JSON.
    let report = cli.ok(&[
        "load",
        "acme/load",
        "--subscribers",
        "3",
        "--publishers",
        "2",
        "--window",
        "4",
        "--duration",
        "2s",
        "--json",
    ]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert!(report["acked"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["delivered"], report["expected_deliveries"], "{report}");
    assert_eq!(report["latency_ms"]["count"], report["delivered"], "{report}");
    let open = cli.ok(&["load", "acme/load-open", "--subscribers", "2", "--rate", "100", "--duration", "1s"]);
    assert!(open.contains("delivery latency") && open.contains("events/s delivered"), "{open}");
}

/// The readable sender of event 2, as `tail --json` reported it.
fn tail_sender(json_lines: &str) -> String {
    let second: Value = serde_json::from_str(json_lines.lines().nth(1).unwrap()).unwrap();
    format!("connection {}", second["sender"])
}
