//! Cost of the tax calendar for a firm of 1,000 clients, each figure beside a peer measured in the same run:
//! - `year_of_obligations`: every obligation due in 2026 for 1,000 clients of mixed regimes and attributes
//!   (applicability, occurrences, due dates moved on the production calendar) — what `calendar --year` computes;
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

const CLIENTS: u32 = 1_000;

fn inn(n: u32) -> Inn {
    let base = format!("77{n:07}");
    let mut d: Vec<u32> = base.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let w = [2, 4, 10, 3, 5, 9, 4, 6, 8];
    d.push(d.iter().zip(w).map(|(a, b)| a * b).sum::<u32>() % 11 % 10);
    Inn::parse(&d.iter().map(u32::to_string).collect::<String>()).unwrap()
}

fn clients() -> Vec<Client> {
    let attributes = ["property", "vehicles", "land", "profit_monthly"];
    (0..CLIENTS)
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

fn bench(c: &mut Criterion) {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/calendar");
    let production = ProductionCalendar::load_dir(&rules.join("production")).unwrap();
    let tax = TaxCalendar::load_dir(&rules).unwrap();
    let clients: Vec<(ClientFacts, Option<String>)> = clients()
        .iter()
        .map(|c| (ClientFacts::of(c), c.region.clone()))
        .collect();
    let total: usize = clients
        .iter()
        .map(|(f, r)| {
            tax.obligations(f, r.as_deref(), 2026, &production)
                .unwrap()
                .len()
        })
        .sum();
    println!(
        "{CLIENTS} clients, {} definitions: {total} obligations due in 2026",
        tax.events().len()
    );

    let mut group = c.benchmark_group("calendar_1000_clients");
    group.throughput(Throughput::Elements(u64::from(CLIENTS)));
    group.bench_function("year_of_obligations", |b| {
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

criterion_group!(benches, bench);
criterion_main!(benches);
