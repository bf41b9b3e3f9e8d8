//! Cost of the tax calendar for a firm of 1,000 and of 10,000 clients, each figure beside a peer measured in the
//! same run:
//! - `year_of_obligations`: every obligation due in 2026 for every client, of mixed regimes, attributes and
//!   regions (applicability, occurrences, due dates moved on the production calendar) — what `calendar --year`
//!   computes, through one `TaxCalendar::year_plan` (built inside each iteration: each event's dates computed once
//!   per production calendar, copied per client);
//! - `year_of_obligations_client_by_client` (1,000 clients): the same lists computed for each client alone
//!   (`TaxCalendar::obligations`), as `calendar --year` did before the plan;
//! - `iterate_clients_x_events` (the peer): merely evaluating each definition's `applies` for each client — the
//!   floor any calendar pays; the ratio is what generating occurrences and dates costs on top.
//!
//! Run: `cargo bench --bench calendar`.

#![allow(clippy::unwrap_used)] // a benchmark stops at the first failure

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use taxinbox::calendar::tax::{ClientFacts, TaxCalendar};
use taxinbox::calendar::ProductionCalendar;
use taxinbox::directory::{Client, Regime};
use taxinbox::ids::Inn;

fn inn(n: u32) -> Inn {
    let base = format!("77{n:07}");
    let mut d: Vec<u32> = base.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let w = [2, 4, 10, 3, 5, 9, 4, 6, 8];
    d.push(d.iter().zip(w).map(|(a, b)| a * b).sum::<u32>() % 11 % 10);
    Inn::parse(&d.iter().map(u32::to_string).collect::<String>()).unwrap()
}

fn clients(n: u32) -> Vec<Client> {
    let attributes = ["property", "vehicles", "land", "profit_monthly"];
    (0..n)
        .map(|n| Client {
            name: format!("ООО «Клиент {n}»"),
            inn: inn(n),
            kpp: None,
            regime: Regime::ALL[(n % 7) as usize],
            has_employees: n % 3 != 0,
            vat_payer: n % 4 == 0,
            accountant: "ivanova@firm.example".into(),
            backup_accountant: None,
            emails: vec![],
            region: [None, Some("16".to_owned()), Some("02".to_owned())][(n % 3) as usize].clone(),
            attributes: attributes
                .iter()
                .enumerate()
                .filter(|(i, _)| n & (1 << i) != 0)
                .map(|(_, a)| (*a).to_owned())
                .collect(),
        })
        .collect()
}

fn bench_clients(c: &mut Criterion, count: u32) {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/calendar");
    let production = ProductionCalendar::load_dir(&rules.join("production")).unwrap();
    let tax = TaxCalendar::load_dir(&rules).unwrap();
    let clients: Vec<(ClientFacts, Option<String>)> = clients(count)
        .iter()
        .map(|c| (ClientFacts::of(c), c.region.clone()))
        .collect();
    let plan = tax.year_plan(2026, &production);
    let mut total = 0;
    for (f, r) in &clients {
        let listed: Vec<_> = plan
            .obligations(f, r.as_deref())
            .unwrap()
            .into_iter()
            .cloned()
            .collect();
        // The plan is a faster way to the same lists, never other ones.
        assert_eq!(
            listed,
            tax.obligations(f, r.as_deref(), 2026, &production).unwrap()
        );
        total += listed.len();
    }
    println!(
        "{count} clients, {} definitions: {total} obligations due in 2026",
        tax.events().len()
    );

    let mut group = c.benchmark_group(format!("calendar_{count}_clients"));
    group.throughput(Throughput::Elements(u64::from(count)));
    if count > 1_000 {
        group.sample_size(10);
    }
    group.bench_function("year_of_obligations", |b| {
        b.iter(|| {
            let plan = tax.year_plan(2026, &production);
            let mut n = 0;
            for (facts, region) in &clients {
                n += plan.obligations(facts, region.as_deref()).unwrap().len();
            }
            black_box(n)
        })
    });
    if count <= 1_000 {
        group.bench_function("year_of_obligations_client_by_client", |b| {
            b.iter(|| {
                let mut n = 0;
                for (facts, region) in &clients {
                    n += tax
                        .obligations(facts, region.as_deref(), 2026, &production)
                        .unwrap()
                        .len();
                }
                black_box(n)
            })
        });
    }
    group.bench_function("iterate_clients_x_events", |b| {
        b.iter(|| {
            let mut n = 0;
            for (facts, _) in &clients {
                n += tax
                    .events()
                    .iter()
                    .filter(|e| e.applies.eval(facts))
                    .count();
            }
            black_box(n)
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_clients(c, 1_000);
    bench_clients(c, 10_000);
}

criterion_group!(benches, bench);
criterion_main!(benches);
