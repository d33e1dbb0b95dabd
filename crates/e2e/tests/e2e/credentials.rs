//! Credentials for the service under test (protocol v8) with real binaries and the real
//! `openssl` CLI: a suite whose scripts use `@hostcert@`, `@hostkey@`, `@cacert@` and
//! `@session_secret_file@` finds, on each of two slaves, a host certificate of a CA of the
//! session (its name as CN and DNS names, serverAuth and clientAuth, a P-256 key in PKCS#8
//! that matches it, mode 0600) and one secret shared by both; the two slaves' credentials
//! make a mutually verified TLS handshake between them; the credentials folder is gone
//! once the session has ended, and the next session gets a new CA and secret. A suite that
//! uses none of the tags gets no files, and one that asks only for the secret gets only it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use xrdtest_e2e::{stage_names, stage_run, state, summarize, Api, Case, Env, MasterOptions, Slave, Suite};

/// A name with a dot (its short name is a DNS name of its certificate too), the TLS server.
const SERVER: &str = "cr1.xrd.test";
/// A plain name, the TLS client.
const CLIENT: &str = "cr2";
const SLAVES: [&str; 2] = [SERVER, CLIENT];
const LIMIT: Duration = Duration::from_secs(120);

/// Shell helpers for the scripts: each records one named check (`check` of functions.sh),
/// whose message says what was expected and what was found.
const HELPERS: &str = r#"source "$XRDTEST_FUNCTIONS"
# same NAME EXPECTED FOUND
same() {
    if [ "$2" = "$3" ]; then check "$1" pass; else check "$1" fail "expected [$2], found [$3]"; fi
}
# succeeds NAME COMMAND...
succeeds() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then check "$name" pass; else check "$name" fail "expected \`$*\` to exit 0, it exited $rc: $out"; fi
}
# fails NAME COMMAND...
fails() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then check "$name" fail "expected \`$*\` to fail, it exited 0: $out"; else check "$name" pass; fi
}
"#;

/// Suite init: everything about this slave's files, then hashes of what the test compares
/// across slaves and sessions. `__MASTER_CA__`: the master's own CA, which must not do.
const CHECK_FILES: &str = r#"me=$XRDTEST_SLAVE
folder=$XRDTEST_WORKDIR/credentials
same tag_paths "$folder/hostcert.pem $folder/hostkey.pem $folder/cacert.pem $folder/session_secret" \
    "@hostcert@ @hostkey@ @cacert@ @session_secret_file@"
same files "cacert.pem hostcert.pem hostkey.pem session_secret" "$(ls -A "$folder" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
same verify "@hostcert@: OK" "$(openssl verify -CAfile @cacert@ @hostcert@ 2>&1)"
succeeds verify_as_server openssl verify -purpose sslserver -CAfile @cacert@ @hostcert@
succeeds verify_as_client openssl verify -purpose sslclient -CAfile @cacert@ @hostcert@
succeeds master_ca_readable test -s '__MASTER_CA__'
fails not_by_the_master_ca openssl verify -CAfile '__MASTER_CA__' @hostcert@
same common_name "$me" "$(openssl x509 -noout -subject -nameopt multiline -in @hostcert@ 2>&1 | sed -n 's/^ *commonName *= //p')"
if [[ $me == *.* ]]; then names="DNS:$me, DNS:${me%%.*}"; else names="DNS:$me"; fi
same subject_alt_names "$names" "$(openssl x509 -noout -ext subjectAltName -in @hostcert@ 2>&1 | sed -n '2s/^ *//p')"
same extended_key_usage "TLS Web Server Authentication, TLS Web Client Authentication" \
    "$(openssl x509 -noout -ext extendedKeyUsage -in @hostcert@ 2>&1 | sed -n '2s/^ *//p')"
same ca_is_a_ca "CA:TRUE" "$(openssl x509 -noout -ext basicConstraints -in @cacert@ 2>&1 | sed -n '2s/^ *//p' | cut -d, -f1)"
same key_curve prime256v1 "$(openssl pkey -in @hostkey@ -noout -text 2>&1 | sed -n 's/^ASN1 OID: //p')"
same key_is_pkcs8 "-----BEGIN PRIVATE KEY-----" "$(head -n 1 @hostkey@)"
same key_matches_cert "$(openssl x509 -in @hostcert@ -pubkey -noout 2>&1)" "$(openssl pkey -in @hostkey@ -pubout 2>&1)"
same modes "hostcert.pem 644 hostkey.pem 600 cacert.pem 644 session_secret 600" \
    "hostcert.pem $(stat -c %a @hostcert@) hostkey.pem $(stat -c %a @hostkey@) cacert.pem $(stat -c %a @cacert@) session_secret $(stat -c %a @session_secret_file@)"
secret=$(cat @session_secret_file@)
if [[ $secret =~ ^[0-9a-f]{64}$ ]]; then
    check secret_is_64_hex pass
else
    check secret_is_64_hex fail "expected 64 lowercase hex characters, found [$secret] (${#secret} characters)"
fi
same secret_bytes "65 bytes, the last 0a" \
    "$(wc -c < @session_secret_file@) bytes, the last $(tail -c 1 @session_secret_file@ | od -An -tx1 | tr -d ' ')"
echo "secret-sha256 $(sha256sum < @session_secret_file@ | cut -d' ' -f1)"
echo "cacert-sha256 $(sha256sum < @cacert@ | cut -d' ' -f1)"
echo "hostcert-sha256 $(sha256sum < @hostcert@ | cut -d' ' -f1)"
"#;

/// The checks [`CHECK_FILES`] records.
const CHECK_FILES_NAMES: [&str; 17] = [
    "tag_paths",
    "files",
    "verify",
    "verify_as_server",
    "verify_as_client",
    "master_ca_readable",
    "not_by_the_master_ca",
    "common_name",
    "subject_alt_names",
    "extended_key_usage",
    "ca_is_a_ca",
    "key_curve",
    "key_is_pkcs8",
    "key_matches_cert",
    "modes",
    "secret_is_64_hex",
    "secret_bytes",
];

/// Case run: a TLS handshake between the slaves, each verifying the other with the session's
/// CA. The server listens on `__PORT__` (a free port when the test started; another one if
/// that is taken by now) and publishes the port it got to the client (sync topic
/// `tls_port`); `s_server` accepts one connection and prints whether its handshake finished.
const HANDSHAKE: &str = r#"port=__PORT__
server='__SERVER__'
client='__CLIENT__'
if [ "$XRDTEST_SLAVE" = "$server" ]; then
    # Done waiting when s_server listens, or has exited (the port was taken).
    started() { grep -qx ACCEPT s_server.log || ! kill -0 "$pid" 2>/dev/null; }
    listening=no
    for try in 1 2 3 4 5; do
        timeout 60 openssl s_server -www -accept "$port" -cert @hostcert@ -key @hostkey@ -CAfile @cacert@ \
            -Verify 1 -verify_return_error -verify_hostname "$client" -naccept 1 >s_server.log 2>&1 </dev/null &
        pid=$!
        wait_until --timeout 20s --every 100ms started
        if grep -qx ACCEPT s_server.log; then
            listening=yes
            break
        fi
        echo "s_server did not listen on port $port (try $try): $(cat s_server.log)"
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        port=$(shuf -i 20000-60999 -n 1)
    done
    if [ "$listening" = yes ]; then
        check tls_server_listening pass
        sync_publish tls_port "$port"
        wait "$pid"
        rc=$?
    else
        check tls_server_listening fail "expected s_server to listen within 5 tries, the last wrote: $(cat s_server.log)"
        rc=none
    fi
    echo '----- s_server'
    cat s_server.log
    same tls_server_exit 0 "$rc"
    same tls_server_handshake "1 server accepts that finished" "$(grep -o '[0-9]* server accepts that finished' s_server.log)"
    same tls_server_verify_errors "" "$(grep 'verify error' s_server.log)"
    same tls_server_saw_client "CN = $client" "$(sed -n 's/^depth=0 .*\(CN = [^,]*\).*/\1/p' s_server.log)"
else
    if port=$(sync_subscribe tls_port --timeout 60s); then
        out=$(timeout 30 openssl s_client -connect "127.0.0.1:$port" -CAfile @cacert@ -cert @hostcert@ -key @hostkey@ \
            -verify_return_error -verify_hostname "$server" </dev/null 2>&1)
        rc=$?
    else
        out="(not run: the server published no port)"
        rc=none
    fi
    echo '----- s_client'
    echo "$out"
    same tls_client_exit 0 "$rc"
    same tls_client_verify "Verify return code: 0 (ok)" "$(grep -o 'Verify return code: .*' <<<"$out" | head -n 1)"
fi
"#;

/// Suite finalize, the session's last stage: the files are still there.
const STILL_THERE: &str = r#"same still_there_in_the_last_stage "cacert.pem hostcert.pem hostkey.pem session_secret" \
    "$(ls -A "$XRDTEST_WORKDIR/credentials" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
"#;

/// Any stage of a suite without the tags: no credentials folder.
const NO_FOLDER: &str = r#"if [ -d "$XRDTEST_WORKDIR" ]; then
    check work_folder_exists pass
else
    check work_folder_exists fail "expected the session work folder [$XRDTEST_WORKDIR] to exist, found none"
fi
if [ -e "$XRDTEST_WORKDIR/credentials" ]; then
    check no_credentials fail "expected no [$XRDTEST_WORKDIR/credentials], found: $(ls -lA "$XRDTEST_WORKDIR/credentials" 2>&1)"
else
    check no_credentials pass
fi
"#;

/// Suite init of a suite that asks for the secret alone.
const SECRET_ONLY: &str = r#"same tag_path "$XRDTEST_WORKDIR/credentials/session_secret" "@session_secret_file@"
same only_the_secret "session_secret" "$(ls -A "$XRDTEST_WORKDIR/credentials" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
same secret_mode 600 "$(stat -c %a @session_secret_file@ 2>&1)"
secret=$(cat @session_secret_file@)
if [[ $secret =~ ^[0-9a-f]{64}$ ]]; then
    check secret_is_64_hex pass
else
    check secret_is_64_hex fail "expected 64 lowercase hex characters, found [$secret] (${#secret} characters)"
fi
echo "secret-sha256 $(sha256sum < @session_secret_file@ | cut -d' ' -f1)"
"#;

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
    listener.local_addr().expect("its address").port()
}

fn script(body: &str) -> String {
    format!("{HELPERS}{body}")
}

/// The checks one slave's run of `stage` recorded: name → (passed, message).
fn checks(api: &Api, session: &Value, stage: &str, slave: &str) -> BTreeMap<String, (bool, String)> {
    let run = stage_run(session, stage, slave);
    let values = api.get(&format!("/api/stages/{}/values", run["stage_id"]));
    values["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("?").to_string();
            (name, (c["passed"] == true, c["message"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// Asserts that each slave's run of each stage recorded exactly the `expected` checks of
/// its slave and stage, and that all passed; then that the session passed.
fn assert_checks(api: &Api, session: &Value, expected: &[(&str, &str, Vec<&str>)]) {
    let mut problems = Vec::new();
    for (stage, slave, names) in expected {
        let found = checks(api, session, stage, slave);
        let want: BTreeSet<&str> = names.iter().copied().collect();
        let have: BTreeSet<&str> = found.keys().map(String::as_str).collect();
        if want != have {
            problems.push(format!("{stage} on {slave}: expected the checks {want:?}, found {have:?}"));
        }
        for (name, (passed, message)) in &found {
            if !passed {
                problems.push(format!("{stage} on {slave}: check {name} failed: {message}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "expected every check to pass, found:\n{}\n{}",
        problems.join("\n"),
        summarize(session)
    );
    assert_eq!(state(session), "passed", "expected the session to pass, found {}", summarize(session));
}

/// The value a slave's suite init printed as `KEY VALUE`: a SHA-256 in hex.
fn printed(api: &Api, session: &Value, slave: &str, key: &str) -> String {
    let output = api.run_output(session, "SuiteInit", slave);
    let value = output
        .lines()
        .find_map(|line| line.split_once(&format!("{key} ")).map(|(_, value)| value.trim().to_string()))
        .unwrap_or_else(|| {
            panic!("expected a `{key} HASH` line in the output of suite init on {slave}, found:\n{output}")
        });
    assert!(
        value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()),
        "expected `{key}` on {slave} to be a SHA-256 in hex, found `{value}`"
    );
    value
}

/// Asserts that the session's work folder on each slave is kept but its credentials folder
/// is not, and that every slave answered the master's EndSession.
fn assert_credentials_removed(api: &Api, slaves: &[Slave], id: u64) {
    let cleanup = api.get(&format!("/api/sessions/{id}/cleanup"));
    let answered: BTreeSet<&str> =
        cleanup.as_array().into_iter().flatten().filter_map(|c| c["slave"].as_str()).collect();
    assert_eq!(
        answered,
        SLAVES.into_iter().collect::<BTreeSet<_>>(),
        "expected both slaves to answer the end of session {id}, found the answers {cleanup}"
    );
    for slave in slaves {
        let session_dir = slave.work_dir.join("sessions").join(id.to_string());
        assert!(
            session_dir.is_dir(),
            "expected the work folder {} of session {id} on {} to be kept (keep_work_dirs is a day), found none",
            session_dir.display(),
            slave.name
        );
        let folder = session_dir.join("credentials");
        assert!(
            !folder.exists(),
            "expected {} to be removed when session {id} ended on {}, found it with {:?}",
            folder.display(),
            slave.name,
            entries(&folder)
        );
    }
}

fn entries(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default()
}

/// What one session of `ts_credentials` gave each slave, as hashes.
struct Issued {
    secret: BTreeMap<String, String>,
    ca: BTreeMap<String, String>,
    host: BTreeMap<String, String>,
}

fn run_credentials_session(env: &Env) -> (u64, Issued) {
    let api = env.api();
    let id = api.run("ts_credentials");
    let session = api.wait_final(id, LIMIT);
    assert_eq!(
        stage_names(&session),
        ["suite_init", "case_init:tls", "case_run:tls", "suite_finalize"],
        "expected the stages of ts_credentials, found others: {}",
        summarize(&session)
    );
    let file_checks: Vec<&str> = CHECK_FILES_NAMES.to_vec();
    assert_checks(
        &api,
        &session,
        &[
            ("suite_init", SERVER, file_checks.clone()),
            ("suite_init", CLIENT, file_checks),
            (
                "case_run:tls",
                SERVER,
                vec![
                    "tls_server_listening",
                    "tls_server_exit",
                    "tls_server_handshake",
                    "tls_server_verify_errors",
                    "tls_server_saw_client",
                ],
            ),
            ("case_run:tls", CLIENT, vec!["tls_client_exit", "tls_client_verify"]),
            ("suite_finalize", SERVER, vec!["still_there_in_the_last_stage"]),
            ("suite_finalize", CLIENT, vec!["still_there_in_the_last_stage"]),
        ],
    );
    let collect = |key: &str| -> BTreeMap<String, String> {
        SLAVES.iter().map(|slave| (slave.to_string(), printed(&api, &session, slave, key))).collect()
    };
    let issued =
        Issued { secret: collect("secret-sha256"), ca: collect("cacert-sha256"), host: collect("hostcert-sha256") };
    assert_eq!(
        issued.secret[SERVER], issued.secret[CLIENT],
        "expected one secret for both slaves of session {id}, found the hashes {:?}",
        issued.secret
    );
    assert_eq!(
        issued.ca[SERVER], issued.ca[CLIENT],
        "expected one CA certificate for both slaves of session {id}, found the hashes {:?}",
        issued.ca
    );
    assert_ne!(
        issued.host[SERVER], issued.host[CLIENT],
        "expected a host certificate of its own for each slave of session {id}, found the same hash {:?}",
        issued.host
    );
    assert_credentials_removed(&api, &env.slaves, id);
    (id, issued)
}

#[test]
fn each_slave_gets_a_host_certificate_of_the_sessions_ca_and_the_shared_secret() {
    let port = free_port();
    let mut env = Env::build(MasterOptions::default(), |dir| {
        let master_ca = dir.join("master").join("state").join("ca.crt");
        let handshake = HANDSHAKE
            .replace("__PORT__", &port.to_string())
            .replace("__SERVER__", SERVER)
            .replace("__CLIENT__", CLIENT);
        vec![Suite::new("ts_credentials", &SLAVES)
            .init(script(&CHECK_FILES.replace("__MASTER_CA__", &master_ca.display().to_string())))
            .case(Case::new("tls").run(script(&handshake)))
            .finalize(script(STILL_THERE))]
    });
    assert_eq!(
        env.master.ca_file(),
        env.path().join("master").join("state").join("ca.crt"),
        "expected the master's CA where the suite's script looks for it"
    );
    env.start_slaves(&SLAVES);

    let (first_id, first) = run_credentials_session(&env);
    let (second_id, second) = run_credentials_session(&env);
    assert_ne!(first_id, second_id);
    assert_ne!(
        first.secret[SERVER], second.secret[SERVER],
        "expected a new secret for session {second_id}, found the hash of session {first_id}'s"
    );
    assert_ne!(
        first.ca[SERVER], second.ca[SERVER],
        "expected a new CA certificate for session {second_id}, found the hash of session {first_id}'s"
    );
    for slave in SLAVES {
        assert_ne!(
            first.host[slave], second.host[slave],
            "expected a new host certificate on {slave} for session {second_id}, found the hash of session {first_id}'s"
        );
    }
}

#[test]
fn a_suite_without_the_tags_gets_no_credentials() {
    let mut env = Env::new(
        &[Suite::new("ts_plain", &SLAVES)
            .init(script(NO_FOLDER))
            .case(Case::new("plain").init(script(NO_FOLDER)).run(script(NO_FOLDER)))
            .finalize(script(NO_FOLDER))],
        MasterOptions::default(),
    );
    env.start_slaves(&SLAVES);
    let api = env.api();
    let id = api.run("ts_plain");
    let session = api.wait_final(id, LIMIT);
    let stages = ["suite_init", "case_init:plain", "case_run:plain", "suite_finalize"];
    assert_eq!(stage_names(&session), stages, "expected the stages of ts_plain, found others: {}", summarize(&session));
    let expected: Vec<(&str, &str, Vec<&str>)> = stages
        .iter()
        .flat_map(|stage| SLAVES.map(|slave| (*stage, slave, vec!["work_folder_exists", "no_credentials"])))
        .collect();
    assert_checks(&api, &session, &expected);
    for slave in &env.slaves {
        let folder = slave.work_dir.join("sessions").join(id.to_string()).join("credentials");
        assert!(
            !folder.exists(),
            "expected no credentials for session {id} on {}, found {} with {:?}",
            slave.name,
            folder.display(),
            entries(&folder)
        );
    }
}

#[test]
fn a_suite_that_asks_for_the_secret_alone_gets_no_certificates() {
    let mut env = Env::new(
        &[Suite::new("ts_secret_only", &SLAVES).init(script(SECRET_ONLY)).case(Case::new("nothing"))],
        MasterOptions::default(),
    );
    env.start_slaves(&SLAVES);
    let api = env.api();
    let id = api.run("ts_secret_only");
    let session = api.wait_final(id, LIMIT);
    let names = vec!["tag_path", "only_the_secret", "secret_mode", "secret_is_64_hex"];
    assert_checks(&api, &session, &[("suite_init", SERVER, names.clone()), ("suite_init", CLIENT, names)]);
    let (server, client) =
        (printed(&api, &session, SERVER, "secret-sha256"), printed(&api, &session, CLIENT, "secret-sha256"));
    assert_eq!(
        server, client,
        "expected one secret for both slaves of session {id}, found the hashes {server} and {client}"
    );
    assert_credentials_removed(&api, &env.slaves, id);
}
