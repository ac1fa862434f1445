use super::*;
use chrono::TimeZone;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn sched(cron: &str, tz: &str) -> CronSchedule {
    CronSchedule::new(cron, tz).unwrap_or_else(|e| panic!("{cron} {tz}: {e}"))
}

/// Wall-clock rendering in the schedule's zone, for readable assertions.
fn local(s: &CronSchedule, t: DateTime<Utc>) -> String {
    t.with_timezone(&s.timezone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

#[test]
fn five_fields_and_aliases() {
    let s = sched("0 * * * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-01-01T10:00:00Z")),
        Some(utc("2026-01-01T11:00:00Z"))
    );
    let h = sched("@hourly", "UTC");
    assert_eq!(
        h.next_n(utc("2026-01-01T10:30:00Z"), 2),
        s.next_n(utc("2026-01-01T10:30:00Z"), 2)
    );
    let d = sched("@daily", "UTC");
    assert_eq!(
        d.next_after(utc("2026-01-01T10:30:00Z")),
        Some(utc("2026-01-02T00:00:00Z"))
    );
    let w = sched("0 9 * * MON-FRI", "UTC");
    // 2026-01-02 is a Friday; the next weekday 09:00 after Friday noon is Monday.
    assert_eq!(
        w.next_after(utc("2026-01-02T12:00:00Z")),
        Some(utc("2026-01-05T09:00:00Z"))
    );
}

#[test]
fn six_fields_have_a_leading_seconds_field() {
    let s = sched("* * * * * *", "UTC");
    assert_eq!(
        s.next_n(utc("2026-01-01T00:00:00Z"), 3),
        vec![
            utc("2026-01-01T00:00:01Z"),
            utc("2026-01-01T00:00:02Z"),
            utc("2026-01-01T00:00:03Z"),
        ]
    );
    let s = sched("15 0 * * * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-01-01T00:00:20Z")),
        Some(utc("2026-01-01T01:00:15Z"))
    );
}

#[test]
fn zone_sets_the_wall_clock() {
    let s = sched("0 9 * * *", "Europe/Berlin");
    // Winter: CET = UTC+1; summer: CEST = UTC+2.
    assert_eq!(
        s.next_after(utc("2026-01-15T00:00:00Z")),
        Some(utc("2026-01-15T08:00:00Z"))
    );
    assert_eq!(
        s.next_after(utc("2026-07-15T00:00:00Z")),
        Some(utc("2026-07-15T07:00:00Z"))
    );
}

#[test]
fn refusals_name_the_field() {
    for bad in [
        "",
        "   ",
        "* * * *",
        "0 0 0 1 1 * 2030",
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "not cron at all",
        "@fortnightly",
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
    ] {
        let e = CronSchedule::new(bad, "UTC").expect_err(bad);
        assert_eq!(e.field(), "cron", "{bad}: {e}");
        assert!(e.to_string().starts_with("cron: "), "{e}");
    }
    let long = format!("0 0 * * {}", "1,".repeat(200));
    assert_eq!(CronSchedule::new(&long, "UTC").unwrap_err().field(), "cron");

    for bad in [
        "",
        "Mars/Olympus",
        "utc ",
        "Europe/Berlin/x",
        &"A".repeat(100),
    ] {
        let e = CronSchedule::new("0 * * * *", bad).expect_err(bad);
        assert_eq!(e.field(), "timezone", "{bad:?}: {e}");
    }
    // A bad zone is reported even with a bad expression (zone is checked first).
    assert_eq!(
        CronSchedule::new("x", "Nowhere").unwrap_err().field(),
        "timezone"
    );
}

#[test]
fn rare_but_real_dates_are_accepted() {
    // Leap day: fires every four years.
    let s = sched("0 0 29 2 *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-01-01T00:00:00Z")),
        Some(utc("2028-02-29T00:00:00Z"))
    );
    // Last day of the month.
    let s = sched("0 12 L * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-02-01T00:00:00Z")),
        Some(utc("2026-02-28T12:00:00Z"))
    );
}

#[test]
fn next_n_is_consecutive_and_capped() {
    let s = sched("*/15 * * * *", "UTC");
    let t = utc("2026-03-01T10:07:00Z");
    let five = s.next_n(t, 5);
    assert_eq!(
        five,
        vec![
            utc("2026-03-01T10:15:00Z"),
            utc("2026-03-01T10:30:00Z"),
            utc("2026-03-01T10:45:00Z"),
            utc("2026-03-01T11:00:00Z"),
            utc("2026-03-01T11:15:00Z"),
        ]
    );
    assert!(s.next_n(t, 0).is_empty());
    assert_eq!(s.next_n(t, 10_000).len(), MAX_NEXT_N);
}

#[test]
fn latest_due_gives_one_tick_however_many_were_missed() {
    let s = sched("*/5 * * * *", "UTC");
    let last = utc("2026-03-01T10:00:00Z");
    // Nothing due yet.
    assert_eq!(s.latest_due(last, utc("2026-03-01T10:04:59Z")), None);
    assert_eq!(s.latest_due(last, last), None);
    assert_eq!(s.latest_due(last, utc("2026-03-01T09:00:00Z")), None);
    // Exactly on the tick: due.
    assert_eq!(
        s.latest_due(last, utc("2026-03-01T10:05:00Z")),
        Some(utc("2026-03-01T10:05:00Z"))
    );
    // Down for three days: one run, for the most recent tick.
    assert_eq!(
        s.latest_due(last, utc("2026-03-04T07:33:12Z")),
        Some(utc("2026-03-04T07:30:00Z"))
    );
    // After firing that tick nothing more is due until the next one.
    let fired = utc("2026-03-04T07:30:00Z");
    assert_eq!(s.latest_due(fired, utc("2026-03-04T07:34:59Z")), None);
}

#[test]
fn latest_due_for_rare_schedules() {
    let s = sched("0 0 1 1 *", "UTC");
    let last = utc("2024-01-01T00:00:00Z");
    assert_eq!(
        s.latest_due(last, utc("2026-06-01T00:00:00Z")),
        Some(utc("2026-01-01T00:00:00Z"))
    );
    assert_eq!(s.latest_due(last, utc("2024-12-31T23:59:59Z")), None);
}

/// Brute-force cross-check: over a window, `latest_due` equals the last of
/// the ticks enumerated by `next_after`, for several expressions and zones.
#[test]
fn latest_due_matches_enumeration() {
    for (cron, tz) in [
        ("*/7 * * * *", "UTC"),
        ("0 2 * * *", "Europe/Berlin"),
        ("30 1 * * *", "America/New_York"),
        ("*/20 1-3 * * *", "America/New_York"),
        ("0 0 * * 0", "Asia/Kolkata"),
    ] {
        let s = sched(cron, tz);
        let start = utc("2026-03-07T00:00:00Z");
        let mut now = start;
        while now < utc("2026-03-10T00:00:00Z") {
            let mut last = None;
            let mut c = start;
            while let Some(n) = s.next_after(c) {
                if n > now {
                    break;
                }
                last = Some(n);
                c = n;
            }
            assert_eq!(s.latest_due(start, now), last, "{cron} {tz} at {now}");
            now += chrono::Duration::minutes(37);
        }
    }
}

// ---- DST ----------------------------------------------------------------
// Europe/Berlin 2026: clocks jump 02:00 CET -> 03:00 CEST on 29 March and
// fall back 03:00 CEST -> 02:00 CET on 25 October.

#[test]
fn berlin_spring_forward_fixed_time_runs_after_the_gap() {
    let s = sched("30 2 * * *", "Europe/Berlin");
    let ticks = s.next_n(utc("2026-03-28T00:00:00Z"), 3);
    let shown: Vec<String> = ticks.iter().map(|t| local(&s, *t)).collect();
    // 02:30 does not exist on the 29th: croner runs it at the first instant
    // after the gap that day, 03:00 CEST.
    assert_eq!(
        shown,
        vec![
            "2026-03-28 02:30:00 CET",
            "2026-03-29 03:00:00 CEST",
            "2026-03-30 02:30:00 CEST",
        ]
    );
    assert_eq!(ticks[1], utc("2026-03-29T01:00:00Z"));
}

#[test]
fn berlin_spring_forward_interval_skips_the_gap() {
    let s = sched("*/30 * * * *", "Europe/Berlin");
    let ticks = s.next_n(utc("2026-03-29T00:00:00Z"), 4);
    let shown: Vec<String> = ticks.iter().map(|t| local(&s, *t)).collect();
    assert_eq!(
        shown,
        vec![
            "2026-03-29 01:30:00 CET",
            "2026-03-29 03:00:00 CEST",
            "2026-03-29 03:30:00 CEST",
            "2026-03-29 04:00:00 CEST",
        ]
    );
    // Real time keeps a steady 30 minutes: the wall clock jumped, not time.
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], chrono::Duration::minutes(30));
    }
}

#[test]
fn berlin_fall_back_fixed_time_runs_once() {
    let s = sched("30 2 * * *", "Europe/Berlin");
    let ticks = s.next_n(utc("2026-10-24T12:00:00Z"), 2);
    // 02:30 happens twice on the 25th; croner runs it at the first pass only.
    assert_eq!(
        ticks,
        vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
    );
    assert_eq!(local(&s, ticks[0]), "2026-10-25 02:30:00 CEST");
    // Asking from inside the repeated hour does not give the second pass.
    assert_eq!(
        s.next_after(utc("2026-10-25T00:45:00Z")),
        Some(utc("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn berlin_fall_back_interval_runs_on_both_passes() {
    let s = sched("*/30 * * * *", "Europe/Berlin");
    let ticks = s.next_n(utc("2026-10-24T23:45:00Z"), 5);
    let shown: Vec<String> = ticks.iter().map(|t| local(&s, *t)).collect();
    assert_eq!(
        shown,
        vec![
            "2026-10-25 02:00:00 CEST",
            "2026-10-25 02:30:00 CEST",
            "2026-10-25 02:00:00 CET",
            "2026-10-25 02:30:00 CET",
            "2026-10-25 03:00:00 CET",
        ]
    );
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], chrono::Duration::minutes(30));
    }
}

// America/New_York 2026: 02:00 EST -> 03:00 EDT on 8 March, 02:00 EDT ->
// 01:00 EST on 1 November.

#[test]
fn new_york_both_transitions() {
    let s = sched("30 2 * * *", "America/New_York");
    let spring = s.next_n(utc("2026-03-07T12:00:00Z"), 2);
    assert_eq!(local(&s, spring[0]), "2026-03-08 03:00:00 EDT");
    assert_eq!(local(&s, spring[1]), "2026-03-09 02:30:00 EDT");

    let s = sched("30 1 * * *", "America/New_York");
    let fall = s.next_n(utc("2026-10-31T12:00:00Z"), 2);
    assert_eq!(local(&s, fall[0]), "2026-11-01 01:30:00 EDT");
    assert_eq!(local(&s, fall[1]), "2026-11-02 01:30:00 EST");

    // latest_due across the repeated hour: the 01:30 EST pass is not a
    // tick of a fixed-time job, so from just after the first pass nothing
    // more is due that night.
    assert_eq!(
        s.latest_due(fall[0], utc("2026-11-01T07:00:00Z")),
        None,
        "second pass of 01:30 must not fire"
    );
}

#[test]
fn utc_instants_are_zone_independent() {
    // The same instant expressed with any offset gives the same answer.
    let s = sched("0 * * * *", "Asia/Tokyo");
    let a = utc("2026-05-05T05:05:05Z");
    let b = chrono::FixedOffset::east_opt(-7 * 3600)
        .unwrap()
        .from_utc_datetime(&a.naive_utc())
        .with_timezone(&Utc);
    assert_eq!(s.next_after(a), s.next_after(b));
    assert_eq!(s.timezone(), chrono_tz::Asia::Tokyo);
    assert_eq!(s.expr(), "0 * * * *");
}
