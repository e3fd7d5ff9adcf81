//! Hostile templates: every bomb class answers a clear `422` at save time or fails its run
//! `RENDER_LIMIT_EXCEEDED` at run time, within its budget, and the service is back to idle
//! (memory and CPU, read from `/proc` for the real `docbundle-local` process and its rendering
//! processes) within a second after each.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docbundle::render::sandbox::SandboxSettings;
use docbundle::render::{
    DocumentFormat, Isolation, RenderInput, RenderLimits, Renderer, TemplateErrorKind,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, TestApp};

/// Budgets the tests run under: small enough that every bomb trips quickly.
const TIME_BUDGET_MS: u64 = 2_000;
const MEMORY_BUDGET_MB: u64 = 256;

/// Bombs that must be stopped by a budget (time or memory), by format.
fn budget_bombs() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("list doubling", "txt",
         "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"),
        ("string doubling", "txt",
         "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
        ("replace doubling", "html",
         "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s|replace('x', 'xx') %}{% endfor %}{{ ns.s|length }}"),
        ("dict doubling", "json",
         "{% set ns = namespace(d={'k': 'x'}) %}{% for i in range(60) %}{% set ns.d = {'a': ns.d, 'b': ns.d} %}{% endfor %}{{ ns.d|tojson }}"),
        ("string repetition", "md", "{{ 'x' * 100000000000 }}"),
        ("typst range loop", "pdf", "#let x = 0\n#for i in range(100000000) { x += i }\n#x"),
        ("typst array doubling", "pdf",
         "#let a = (1,)\n#for i in range(60) { a = a + a }\n#a.len()"),
        ("typst huge array", "pdf", "#let a = range(1000000000)\n#a.len()"),
    ]
}

/// Bombs the engines refuse by themselves (recursion limits): still a clean `422`.
fn refused_bombs() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "macro recursion",
            "txt",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        ),
        ("typst recursion", "pdf", "#let f(n) = f(n + 1)\n#f(0)"),
        (
            "typst nested content",
            "pdf",
            "#let f(n) = if n == 0 { [x] } else { [#f(n - 1)] }\n#f(100000)",
        ),
    ]
}

fn configuration(name: &str, format: &str, template: &str) -> Value {
    json!({
        "name": name,
        "documents": [{"name": format!("doc.{format}"), "format": format, "template": template}],
    })
}

// ------------------------------------------------------------------- the real local server

/// `docbundle-local serve` as a process of its own, on a free port, with a fresh database and
/// queue, under the test budgets.
struct LocalServer {
    process: Child,
    base: String,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl LocalServer {
    async fn start() -> LocalServer {
        let mut settings = harness::stack_settings();
        settings.database_url = harness::fresh_database(&settings).await;
        let bootstrap = docbundle::AppState::build(settings.clone())
            .await
            .expect("state");
        let (queue_url, _) = harness::fresh_queue(&bootstrap, 30, 3).await;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let process = Command::new(env!("CARGO_BIN_EXE_docbundle-local"))
            .arg("serve")
            .env("DATABASE_URL", &settings.database_url)
            .env("RUNS_QUEUE_URL", &queue_url)
            .env("LOCAL_API_ADDR", format!("127.0.0.1:{port}"))
            .env("RENDER_TIME_BUDGET_MS", TIME_BUDGET_MS.to_string())
            .env("RENDER_MEMORY_BUDGET_MB", MEMORY_BUDGET_MB.to_string())
            .env("RENDER_PROCESSES", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docbundle-local");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docbundle-local did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (id, name) in [
            (harness::MERCHANT_A, "Merchant A"),
            (harness::MERCHANT_B, "Merchant B"),
        ] {
            docbundle::infra::db::merchants::insert(&bootstrap.db, id.parse().unwrap(), name)
                .await
                .expect("seed merchant");
        }
        LocalServer { process, base }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// The process and every descendant, from `/proc/<pid>/task/*/children`.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", all[i]));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    all
}

/// Resident bytes and CPU ticks (user + system) of a process tree.
fn tree_usage(pid: u32) -> (u64, u64) {
    let page = 4096u64;
    let mut rss = 0;
    let mut ticks = 0;
    for p in process_tree(pid) {
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{p}/statm")) {
            rss += statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * page;
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name (which may hold spaces): utime is the 12th, stime
            // the 13th.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            ticks += field(11) + field(12);
        }
    }
    (rss, ticks)
}

/// Waits (at most a second) until the tree holds at most `idle_rss` plus a little and burns
/// no CPU; returns how long it took.
async fn back_to_idle(pid: u32, idle_rss: u64, what: &str) -> Duration {
    let started = Instant::now();
    let slack = 48 * 1024 * 1024;
    loop {
        let (rss_before, ticks_before) = tree_usage(pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, ticks_after) = tree_usage(pid);
        // Ticks are 10 ms: at most two in 100 ms is under a fifth of a core.
        let quiet = ticks_after.saturating_sub(ticks_before) <= 2;
        if rss_before <= idle_rss + slack && quiet {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: not back to idle after a second: {} MB resident (idle {} MB), {} ticks in 100 ms",
            rss_before >> 20,
            idle_rss >> 20,
            ticks_after.saturating_sub(ticks_before)
        );
    }
}

async fn save(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> reqwest::Response {
    http.post(format!("{base}/api/v1/configurations"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the local API answers")
}

/// Saves a one-document configuration that must be refused: asserts a `422` on the template
/// and returns its message.
async fn save_rejected(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    what: &str,
    format: &str,
    template: &str,
) -> String {
    let response = save(http, base, token, &configuration(what, format, template)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
    assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{what}: {body}");
    let detail = &body["error"]["details"][0];
    assert_eq!(detail["field"], "documents[0].template", "{what}: {body}");
    detail["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bombs_at_save_time_answer_422_and_the_server_returns_to_idle() {
    let server = LocalServer::start().await;
    let token = harness::token("merchant-a").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Warm: a PDF and a text configuration saved, so rendering processes are up and loaded.
    let invoice: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("events/samples/invoice-configuration.json"),
        )
        .unwrap(),
    )
    .unwrap();
    harness::upload_sample_assets(&http, &server.base, &token).await;
    for body in [
        invoice.clone(),
        configuration("Hello", "txt", "Hello {{ data.name }}"),
    ] {
        let response = save(&http, &server.base, &token, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss, _) = tree_usage(server.pid());

    for (what, format, template) in budget_bombs() {
        let started = Instant::now();
        let message = save_rejected(&http, &server.base, &token, what, format, template).await;
        let took = started.elapsed();
        assert!(
            message.contains("time budget of 2000 ms")
                || message.contains("memory budget of 256 MiB")
                || message.contains("output exceeds the limit")
                || message.contains("out of fuel"),
            "{what}: stopped by a budget: {message}"
        );
        // Within its budget, plus the request around it.
        assert!(
            took < Duration::from_millis(TIME_BUDGET_MS + 3_000),
            "{what}: took {took:?}"
        );
        let idle_after = back_to_idle(server.pid(), idle_rss, what).await;
        println!("{what}: 422 in {took:?} ({message}); idle again after {idle_after:?}");
    }
    for (what, format, template) in refused_bombs() {
        let message = save_rejected(&http, &server.base, &token, what, format, template).await;
        let idle_after = back_to_idle(server.pid(), idle_rss, what).await;
        println!("{what}: 422 ({message}); idle again after {idle_after:?}");
    }

    // The server is alive and well: the same PDF configuration still saves, and at most the
    // configured number of rendering processes exist.
    let response = save(&http, &server.base, &token, &invoice).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let children = process_tree(server.pid()).len() - 1;
    assert!(children <= 2, "{children} rendering processes");
}

#[tokio::test]
async fn a_seed_chosen_bomb_fails_its_run_and_the_rest_of_the_batch_completes() {
    let app = TestApp::spawn_with(|s| {
        s.render_limits.time_budget = Duration::from_millis(TIME_BUDGET_MS);
        s.render_limits.max_memory_bytes = MEMORY_BUDGET_MB << 20;
    })
    .await;
    let token = harness::token("merchant-a").await;
    // Harmless with its defaults (one doubling); a seed asks for sixty.
    let body = json!({
        "name": "Seed-chosen",
        "documents": [
            {"name": "count.txt", "format": "txt", "template":
             "{% set ns = namespace(s=[1]) %}{% for i in range(data.n) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"},
            {"name": "pages.pdf", "format": "pdf", "template":
             "#let data = json(\"data.json\")\n#let x = 0\n#for i in range(data.at(\"m\", default: 1)) { x += i }\n#x"}
        ],
        "dataSchema": {"type": "object", "properties": {"n": {"type": "integer"}, "m": {"type": "integer"}}},
        "defaults": {"n": 1}
    });
    let config = crate::configurations::created_id(&app, &token, &body).await;

    let mut runs = Vec::new();
    for seed in [
        json!({"n": 60}),
        json!({"n": 2}),
        json!({"n": 1, "m": 100_000_000}),
    ] {
        let response = app
            .launch(&token, &json!({"configurationId": config, "seed": seed}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let run: Value = response.json().await.unwrap();
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    let bomb = app.run_to_end(&token, &runs[0]).await;
    let fine = app.run_to_end(&token, &runs[1]).await;
    let slow = app.run_to_end(&token, &runs[2]).await;
    assert_eq!(fine["status"], "completed", "{fine}");
    assert_eq!(bomb["status"], "failed", "{bomb}");
    assert_eq!(bomb["error"]["code"], "RENDER_LIMIT_EXCEEDED", "{bomb}");
    assert_eq!(bomb["error"]["document"], "count.txt");
    let message = bomb["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("count.txt") && message.contains("budget"),
        "{message}"
    );
    assert_eq!(slow["status"], "failed", "{slow}");
    assert_eq!(slow["error"]["code"], "RENDER_LIMIT_EXCEEDED", "{slow}");
    assert_eq!(slow["error"]["document"], "pages.pdf");
    let message = slow["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("pages.pdf") && message.contains("budget"),
        "{message}"
    );
}

/// A renderer with one rendering process at most, started from `program`.
fn one_process_renderer(program: std::path::PathBuf) -> Renderer {
    Renderer::new(
        RenderLimits::default(),
        Isolation::Process(SandboxSettings {
            program,
            processes: 1,
        }),
    )
}

fn input_of(data: &Value) -> RenderInput<'_> {
    RenderInput {
        data,
        seed_hash: "abc",
        configuration_name: "Direct",
        configuration_version: 1,
        pdf_standard: None,
        assets: &[],
        attachment: None,
    }
}

/// A rendering process that dies mid-render (as a renderer panic or crash does) fails that
/// one document; the next render gets a fresh process.
#[test]
fn a_crashing_rendering_process_fails_one_render_and_is_replaced() {
    let dir =
        std::env::temp_dir().join(format!("docbundle-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("crashed");
    let script = dir.join("render.sh");
    // The first process started reads a little of its job, then dies by SIGKILL; later ones
    // are the real rendering process.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif mkdir {marker} 2>/dev/null; then head -c 1 >/dev/null; kill -9 $$; fi\nexec {exe} \"$@\"\n",
            marker = marker.display(),
            exe = env!("CARGO_BIN_EXE_docbundle-local"),
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let renderer = one_process_renderer(script);
    let data = json!({"name": "Acme"});
    let input = input_of(&data);
    let crashed = renderer
        .render(DocumentFormat::Txt, "Hello {{ data.name }}", &input)
        .unwrap_err();
    assert_eq!(crashed.kind, TemplateErrorKind::Crashed, "{crashed:?}");
    assert!(crashed.message.contains("signal 9"), "{crashed:?}");
    let again = renderer
        .render(DocumentFormat::Txt, "Hello {{ data.name }}", &input)
        .unwrap();
    assert_eq!(again, b"Hello Acme");
    let _ = std::fs::remove_dir_all(dir);
}

/// Warm renders reuse one process (fonts and library stay loaded).
#[test]
fn warm_renders_reuse_the_rendering_process() {
    let renderer = one_process_renderer(env!("CARGO_BIN_EXE_docbundle-local").into());
    let data = json!({"number": "INV-1"});
    let input = input_of(&data);
    let template = "#let data = json(\"data.json\")\n= Invoice #data.number";
    let first = renderer
        .render(DocumentFormat::Pdf, template, &input)
        .unwrap();
    let pids = renderer.sandbox().unwrap().idle_pids();
    assert_eq!(pids.len(), 1);
    let second = renderer
        .render(DocumentFormat::Pdf, template, &input)
        .unwrap();
    assert_eq!(first, second, "byte-identical across renders");
    assert!(first.starts_with(b"%PDF-"));
    assert_eq!(renderer.sandbox().unwrap().idle_pids(), pids);
}

/// No rendering process can be started (a broken deployment, a host out of processes): saving
/// answers `503` (not a `422` blaming the template) and the worker leaves the run for a retry.
#[tokio::test]
async fn a_renderer_that_cannot_start_is_a_503_and_a_retry_not_a_failed_run() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let body = configuration("Hello", "txt", "Hello {{ data.name }}");
    let config = crate::configurations::created_id(&app, &token, &body).await;
    let launched = app
        .launch(
            &token,
            &json!({"configurationId": config, "seed": {"name": "Acme"}}),
        )
        .await;
    assert_eq!(launched.status(), StatusCode::ACCEPTED);
    let run: Value = launched.json().await.unwrap();

    let broken = app
        .state_with(|s| s.render_program = Some("/nonexistent/docbundle".into()))
        .await;
    let (base, _server) = harness::serve(broken.clone()).await;
    let response = app
        .http
        .post(format!("{base}/api/v1/configurations"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;

    let message = docbundle::domain::outbox::RunMessage {
        run_id: run["id"].as_str().unwrap().parse().unwrap(),
        merchant_id: harness::MERCHANT_A.parse().unwrap(),
    };
    let outcome = bundle_worker::process_run(&broken, &message).await;
    assert!(outcome.is_err(), "a transient fault: {outcome:?}");
    // With a working renderer the same run completes.
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
}

/// A rendering process outlives the thread that happened to start it (the async runtime's
/// blocking threads come and go): the next render, from another thread, uses the same warm
/// process instead of finding it dead.
#[test]
fn a_rendering_process_outlives_the_thread_that_started_it() {
    let renderer = std::sync::Arc::new(one_process_renderer(std::path::PathBuf::from(env!(
        "CARGO_BIN_EXE_docbundle-local"
    ))));
    let data = json!({"name": "Acme"});
    let first = {
        let renderer = renderer.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            renderer
                .render(
                    DocumentFormat::Txt,
                    "Hello {{ data.name }}",
                    &input_of(&data),
                )
                .unwrap()
        })
        .join()
        .unwrap()
    };
    assert_eq!(first, b"Hello Acme");
    let before = renderer.sandbox().unwrap().idle_pids();
    assert_eq!(before.len(), 1);
    // The starting thread has exited; give a parent-death signal time to land.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let again = renderer
        .render(
            DocumentFormat::Txt,
            "Again {{ data.name }}",
            &input_of(&data),
        )
        .unwrap();
    assert_eq!(again, b"Again Acme");
    assert_eq!(
        renderer.sandbox().unwrap().idle_pids(),
        before,
        "the same process"
    );
}
