//! A generated corpus for duplicate detection: distinct issues built from a vocabulary of
//! services, symptoms and objects, plus planted groups of near-duplicates (the same report with
//! other ids, numbers, a word changed or added), deterministic for a seed. Used by the dedup
//! tests and the `core` bench.

use crate::dedup::DedupItem;
use crate::ids::IssueId;

const SERVICES: &[&str] = &[
    "billing",
    "checkout",
    "search",
    "auth",
    "notifications",
    "reporting",
    "inventory",
    "shipping",
    "payments",
    "profile",
    "upload",
    "export",
    "import",
    "webhooks",
    "scheduler",
    "analytics",
    "messaging",
    "catalog",
    "pricing",
    "onboarding",
    "gateway",
    "ledger",
    "invoices",
    "refunds",
];
const SYMPTOMS: &[&str] = &[
    "timeout",
    "crash",
    "deadlock",
    "overflow",
    "leak",
    "mismatch",
    "regression",
    "corruption",
    "duplicate",
    "latency",
    "outage",
    "retry",
    "panic",
    "rejection",
    "truncation",
    "drift",
];
const OBJECTS: &[&str] = &[
    "invoice",
    "session",
    "token",
    "cart",
    "order",
    "webhook",
    "queue",
    "cache",
    "index",
    "report",
    "email",
    "avatar",
    "coupon",
    "subscription",
    "tenant",
    "migration",
    "worker",
    "cursor",
    "batch",
    "locale",
    "currency",
    "timezone",
    "attachment",
    "thumbnail",
    "sitemap",
];
const CONTEXTS: &[&str] = &[
    "after deploy",
    "under load",
    "for european customers",
    "on mobile",
    "during nightly job",
    "when retrying",
    "in the admin panel",
    "for trial accounts",
    "behind the proxy",
    "with large payloads",
    "on first login",
    "after password reset",
    "in dark mode",
];
const VERBS: &[&str] = &[
    "fails", "hangs", "returns", "drops", "skips", "repeats", "rejects", "loses", "corrupts",
];

/// xorshift64*: enough randomness for a corpus, no dependency, same output for a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// A corpus and the planted duplicate groups (each group's issues, oldest first).
pub struct DedupCorpus {
    pub items: Vec<DedupItem>,
    pub groups: Vec<Vec<IssueId>>,
}

/// `distinct` unrelated issues and `groups` groups of 2–4 near-duplicates, shuffled into one
/// numbering.
pub fn dedup_corpus(distinct: usize, groups: usize, seed: u64) -> DedupCorpus {
    let mut rng = Rng(seed | 1);
    let mut drafts: Vec<(String, String, Option<usize>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while drafts.len() < distinct {
        let (svc, sym, obj, ctx, verb) = (
            rng.pick(SERVICES),
            rng.pick(SYMPTOMS),
            rng.pick(OBJECTS),
            rng.pick(CONTEXTS),
            rng.pick(VERBS),
        );
        if !seen.insert((svc, sym, obj)) {
            continue;
        }
        let n = rng.next() % 10_000;
        drafts.push((
            format!("{svc}: {obj} {sym}"),
            format!(
                "The {svc} service {verb} the {obj} request with a {sym} ({n} occurrences). Seen {ctx}; \
                 the {obj} stays in a bad state until someone intervenes."
            ),
            None,
        ));
    }
    for g in 0..groups {
        // Group reports share a specific story that no distinct issue has.
        let svc = rng.pick(SERVICES);
        let obj = rng.pick(OBJECTS);
        let sym = rng.pick(SYMPTOMS);
        let story = format!(
            "{svc} {obj} {sym} group{g} reconciliation stalls checksum{g} mismatch partition{g}"
        );
        let size = 2 + (rng.next() % 3) as usize;
        for k in 0..size {
            let id = rng.next() % 100_000;
            let title = match k {
                0 => format!("{svc}: {obj} {sym} in reconciliation group{g} (checksum{g})"),
                1 => format!("{svc} {obj} {sym} during reconciliation group{g} checksum{g}"),
                2 => format!("Reconciliation group{g}: {svc} {obj} {sym}, checksum{g} again"),
                _ => format!("{svc}: {obj} {sym} in reconciliation group{g} (checksum{g}) still"),
            };
            drafts.push((
                title,
                format!("Reported for account {id}: {story}. Steps: open partition{g}, retry."),
                Some(g),
            ));
        }
    }
    // Shuffle (Fisher–Yates) so that groups are spread over the numbering.
    for i in (1..drafts.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        drafts.swap(i, j);
    }
    let mut out = DedupCorpus {
        items: Vec::with_capacity(drafts.len()),
        groups: vec![Vec::new(); groups],
    };
    for (n, (title, description, group)) in drafts.into_iter().enumerate() {
        let id = IssueId::new();
        if let Some(g) = group {
            out.groups[g].push(id);
        }
        out.items.push(DedupItem {
            id,
            identifier: format!("DISPATCH-{}", n + 1),
            number: n as i64 + 1,
            title,
            description,
            embedding: None,
        });
    }
    out
}
