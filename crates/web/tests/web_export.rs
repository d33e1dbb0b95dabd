//! The export download against a real master in this process: at most four are written at
//! once, a fifth is refused with a JSON 503 and `Retry-After`, and a download that ends
//! frees its place. The session's output is put into the store directly, as the runner
//! would, and is big and random enough that a download whose body is not read cannot
//! finish into the sockets' buffers.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Client;
use xrdtest_master::master::Master;
use xrdtest_master::model::{
    CaseRecord, CaseState, OutputLine, RunState, SessionId, SessionRecord, SessionState, StageRecord, StageRun, Trigger,
};
use xrdtest_proto::Stage;

type Running = common::TestMaster;

/// `ts_export`: one case on one slave.
fn definitions(defs: &Path) {
    let suite = defs.join("suites/ts_export");
    std::fs::create_dir_all(suite.join("tc/tc_big")).unwrap();
    std::fs::write(suite.join("suite.toml"), "name = \"ts_export\"\nmachines = [\"s1\"]\ntests = [\"tc_big\"]\n")
        .unwrap();
    std::fs::write(suite.join("tc/tc_big/run.sh"), "echo run\n").unwrap();
}

async fn start() -> Running {
    common::start_master("", definitions).await
}

/// Output bytes of the session's one run: random text gzip cannot shrink much, far more than
/// the sockets between client and server hold (a few MiB), less than an export's 32 MiB a
/// file.
const OUTPUT_BYTES: usize = 16 << 20;

/// A finished `ts_export` session whose one run printed [`OUTPUT_BYTES`] of random text.
fn store_big_session(master: &Master) -> SessionId {
    let id = master.store.next_session_id().unwrap();
    let mut record = SessionRecord::queued(id, "ts_export", Trigger::Api, vec!["s1".into()], 1_700_000_000_000);
    record.state = SessionState::Passed;
    record.started_ms = Some(1_700_000_000_000);
    record.ended_ms = Some(1_700_000_060_000);
    record.cases.push(CaseRecord {
        state: CaseState::Passed,
        attempts: 1,
        ..CaseRecord::pending("tc_big", "tc_big", Vec::new(), 1)
    });
    let stage_id = master.store.next_stage_ids(1).unwrap();
    // xorshift64: the same text every run, and no pattern gzip finds.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random_line = || {
        (0..1023)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(state >> 58) as usize])
            })
            .collect::<String>()
    };
    let lines_per_chunk = 64;
    for seq in 0..(OUTPUT_BYTES / 1024 / lines_per_chunk) as u64 {
        let chunk: Vec<OutputLine> =
            (0..lines_per_chunk).map(|_| OutputLine { unix_ms: 1_700_000_000_000, text: random_line() }).collect();
        master.store.put_output(stage_id, seq, &chunk).unwrap();
    }
    record.stages.push(StageRecord {
        stage: Stage::CaseRun { case: "tc_big".into() },
        timeout_ms: 60_000,
        skipped: None,
        runs: vec![StageRun {
            stage_id,
            state: RunState::Passed,
            exit_code: Some(0),
            started_ms: Some(1_700_000_000_000),
            ended_ms: Some(1_700_000_060_000),
            output_bytes: OUTPUT_BYTES as u64,
            ..StageRun::pending("s1")
        }],
        repetition: 1,
        attempt: 1,
    });
    master.store.put_session(&record).unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_export_at_once_is_refused_until_one_ends() {
    let m = start().await;
    let id = store_big_session(&m.master);
    let target = format!("/api/sessions/{id}/export.tar.gz");
    let client = Client::http(m.web);
    tokio::task::block_in_place(|| {
        // Four downloads whose bodies nobody reads: their writers wait on the client.
        let mut open: Vec<_> = (0..4).map(|_| client.open(&target, &[])).collect();
        for response in &open {
            assert_eq!(response.status().as_u16(), 200);
        }

        let refused = client.open(&target, &[]);
        assert_eq!(refused.status().as_u16(), 503, "the fifth export at once");
        let headers = common::headers(&refused);
        assert_eq!(common::header(&headers, "retry-after"), Some("5"));
        assert_eq!(common::header(&headers, "content-type"), Some("application/json"));
        let body = refused.into_body().read_to_vec().expect("the refusal's body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert_eq!(body["error"], "4 exports are being written; try again in 5 s");

        // One read to its end: a whole gzip stream, no smaller than random text packs into.
        let mut archive = Vec::new();
        open.remove(0).into_body().into_reader().read_to_end(&mut archive).expect("the whole download");
        assert_eq!(archive.get(..2), Some(&[0x1f, 0x8b][..]), "gzip's magic");
        assert!(archive.len() > OUTPUT_BYTES / 2, "{} bytes", archive.len());

        // Its place is free once its writer and body are done, which ends with the download.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let next = client.open(&target, &[]);
            match next.status().as_u16() {
                200 => break,
                503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                status => panic!("the export after one ended: {status}"),
            }
        }
        // The client leaves the others: their writers stop at their next write.
        drop(open);
    });
}
