//! Micro-benchmarks of the hot pure functions: normalising + fingerprinting an error message,
//! the spawn-gate decision, in-memory ingest and duplicate detection. Results and targets: `docs/performance.md`.
//!
//! `cargo bench -p dispatch-core --bench core -- --warm-up-time 1 --measurement-time 3`

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch_core::event::fingerprint_message;
use dispatch_core::gate::{GateSnapshot, SpawnPolicy, Trigger, decide};
use dispatch_core::run::BudgetBucket;
use std::fmt::Write as _;
use std::hint::black_box;

/// ~80 characters with a UUID and a 6-digit number.
const SHORT: &str =
    "Payment 3f2a9c1e-7b4d-4e8a-9f00-1a2b3c4d5e6f failed for order 123456: card declined";

/// A ~12 KB Node.js-style error with a long async stack, wrapped causes, native frames with hex
/// addresses, request URLs, timestamps, ids and line/column numbers.
fn stack_12kb() -> String {
    const FRAMES: &[(&str, &str)] = &[
        (
            "processTicksAndRejections",
            "node:internal/process/task_queues",
        ),
        (
            "async WebhookHandler.handle",
            "/app/.next/server/app/api/stripe/webhook/route.js",
        ),
        (
            "Object.<anonymous>",
            "/srv/app/node_modules/pg/lib/client.js",
        ),
        (
            "Parser.parseMessage",
            "/srv/app/node_modules/pg-protocol/dist/parser.js",
        ),
        (
            "async ChargeService.capture",
            "/srv/app/dist/services/billing/chargeService.js",
        ),
        (
            "Socket.<anonymous>",
            "/srv/app/node_modules/pg-protocol/dist/index.js",
        ),
        ("async Promise.all", "index 3"),
        ("RetryPolicy.execute", "/srv/app/dist/lib/retry/policy.js"),
    ];
    let mut s = String::with_capacity(13 * 1024);
    s.push_str(
        "Error: Failed to process webhook evt_1OaBcD2eFgHiJk for customer cus_Nf8dJ2kLq9 at \
         2024-01-15T10:30:00.123Z (request 3f2a9c1e-7b4d-4e8a-9f00-1a2b3c4d5e6f, trace \
         9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08)\n",
    );
    let mut i: u64 = 0;
    while s.len() < 12 * 1024 {
        let (func, file) = FRAMES[(i % FRAMES.len() as u64) as usize];
        let _ = writeln!(
            s,
            "    at {func} ({file}:{}:{})",
            17 + i * 37 % 2000,
            5 + i % 61
        );
        if i % 6 == 5 {
            let _ = writeln!(
                s,
                "    #{:02} 0x00007f3a{:08x} in v8::internal::Execution::Call(v8::internal::Isolate*) \
                 /usr/lib/libnode.so.108+0x{:06x}",
                i % 32,
                0x2c00_1a40 + i * 0x1f3,
                0x9a_0000 + i * 0x41
            );
        }
        if i % 12 == 11 {
            let _ = writeln!(
                s,
                "Caused by: GET https://api.stripe.com/v1/charges/ch_{}Xy?expand[]=customer failed \
                 with 502 after {}ms at 2024-01-15 10:{:02}:{:02} from 10.0.{}.{} (attempt {} of 5, \
                 deadline {})",
                3_000_000 + i * 7919,
                120 + i % 900,
                i % 60,
                (i * 7) % 60,
                i % 256,
                (i * 13) % 256,
                1 + i % 5,
                1_705_314_600_123 + i * 1000
            );
        }
        i += 1;
    }
    s
}

/// ~12 KB of frames where every line carries volatile numbers (pids, ms timestamps, order ids,
/// hex addresses): many matches for the word-bounded number rules, the worst case for the plain
/// regex implementation (see `docs/performance.md`).
fn numbers_12kb() -> String {
    let mut s = String::with_capacity(13 * 1024);
    s.push_str("Error: worker pool exhausted at 2024-01-15T10:30:00.123Z\n");
    let mut i: u64 = 0;
    while s.len() < 12 * 1024 {
        let _ = writeln!(
            s,
            "    at Worker.run (/srv/app/dist/queue/worker.js:{}:{}) [0x7f3a2c{:06x}] pid={} \
             ts={} order={}",
            100 + i * 7,
            5 + i % 40,
            i * 4099 % 0xff_ffff,
            40_000 + i,
            1_705_314_600_123 + i,
            900_000 + i * 31
        );
        i += 1;
    }
    s
}

fn normalize_fingerprint(c: &mut Criterion) {
    let stack = stack_12kb();
    let numbers = numbers_12kb();
    let mut g = c.benchmark_group("normalize_fingerprint");
    g.throughput(Throughput::Bytes(SHORT.len() as u64));
    g.bench_function("short", |b| {
        b.iter(|| fingerprint_message(black_box("billing"), black_box("charge"), black_box(SHORT)))
    });
    g.throughput(Throughput::Bytes(stack.len() as u64));
    g.bench_function("stack_12kb", |b| {
        b.iter(|| {
            fingerprint_message(
                black_box("billing"),
                black_box("webhook"),
                black_box(&stack),
            )
        })
    });
    g.throughput(Throughput::Bytes(numbers.len() as u64));
    g.bench_function("numbers_12kb", |b| {
        b.iter(|| fingerprint_message(black_box("worker"), black_box("queue"), black_box(&numbers)))
    });
    g.finish();
}

fn gate(c: &mut Criterion) {
    let policy = SpawnPolicy::default();
    let now = match Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).single() {
        Some(t) => t,
        None => unreachable!("a valid fixed date"),
    };
    // An alert that passes every gate: over the threshold, past the delay and the cooldown,
    // below every concurrency, budget and cost limit.
    let snapshot = GateSnapshot {
        bucket: BudgetBucket::Error,
        trigger: Trigger::Alert {
            source: "billing".into(),
            event_count: 12,
            first_seen_at: now - Duration::hours(1),
            cooldown_until: Some(now - Duration::hours(2)),
        },
        force: false,
        active_error: 3,
        active_prd: 1,
        spawned_today_error: 7,
        spawned_today_prd: 2,
        cost_today_usd: 12.5,
    };
    assert!(
        decide(&policy, &snapshot, now).is_allow(),
        "the benchmark snapshot must pass all gates"
    );
    let mut g = c.benchmark_group("gate");
    g.bench_function("decide", |b| {
        b.iter(|| decide(black_box(&policy), black_box(&snapshot), black_box(now)))
    });
    g.finish();
}

/// One error event through the whole engine ingest (normalise, fingerprint, dedupe or create in
/// the in-memory store, recurrence check, gate), with the kill switch on so that no run is
/// reserved: what a webhook delivery costs before any I/O of a database.
fn ingest_memory(c: &mut Criterion) {
    use dispatch_core::Dispatch;
    use dispatch_core::config::EngineConfig;
    use dispatch_core::event::ErrorEvent;
    use dispatch_core::memory::MemoryStore;
    use dispatch_core::testkit::FakeRunner;
    use std::sync::Arc;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let config = EngineConfig {
        policy: SpawnPolicy {
            kill_switch: true,
            ..SpawnPolicy::default()
        },
        ..EngineConfig::default()
    };
    let d = rt
        .block_on(
            Dispatch::builder(Arc::new(MemoryStore::new()), FakeRunner::new())
                .config(config)
                .build(),
        )
        .unwrap_or_else(|e| panic!("engine: {e}"));
    let mut g = c.benchmark_group("ingest_memory");
    g.bench_function("known_fingerprint", |b| {
        b.iter(|| {
            let e = ErrorEvent::new(
                "loki",
                "billing",
                "charge-customer",
                "Card declined for customer cus_Nf8dJ2kLq9",
            );
            black_box(rt.block_on(d.ingest(e)).map(|r| r.event_count).ok())
        })
    });
    let mut n: u64 = 0;
    g.bench_function("new_fingerprint", |b| {
        b.iter(|| {
            n += 1;
            // Letters, not digits: digits would be normalised into one fingerprint.
            let word: String = (0..8)
                .map(|i| (b'a' + ((n >> (i * 5)) % 26) as u8) as char)
                .collect();
            let e = ErrorEvent::new(
                "loki",
                "billing",
                "charge-customer",
                format!("Card declined for plan {word}"),
            );
            black_box(rt.block_on(d.ingest(e)).map(|r| r.created).ok())
        })
    });
    g.finish();
}

/// Duplicate detection over generated corpora (planted near-duplicate groups among distinct
/// issues): bounded candidates, so time grows about linearly with the number of issues.
fn dedup(c: &mut Criterion) {
    use dispatch_core::dedup::{DedupPolicy, find_clusters};
    use dispatch_core::testkit::dedup_corpus::dedup_corpus;
    let mut g = c.benchmark_group("dedup");
    g.sample_size(10);
    for (distinct, groups) in [(1_800, 80), (9_000, 400)] {
        let corpus = dedup_corpus(distinct, groups, 7);
        let n = corpus.items.len();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("find_clusters_{n}"), |b| {
            b.iter(|| black_box(find_clusters(&corpus.items, &DedupPolicy::default()).len()))
        });
    }
    g.finish();
}

criterion_group!(benches, normalize_fingerprint, gate, ingest_memory, dedup);
criterion_main!(benches);
