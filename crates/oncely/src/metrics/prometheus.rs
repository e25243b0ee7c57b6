//! The Prometheus text exposition format (version 0.0.4) of a [`Snapshot`].

use std::fmt::Write;

use super::Snapshot;

/// A metric family: name, type, help, and its samples as (labels, value).
struct Family<'a> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, &'a str)>, f64)>,
}

/// A counter family of the queue totals: name, help, and how to read it from the totals.
type Counter = (&'static str, &'static str, fn(&crate::records::QueueCounts) -> u64);

/// `snapshot` as Prometheus text: per queue, the messages by state
/// (`oncely_queue_messages{queue, state}`), the oldest pending message's age
/// (`oncely_queue_oldest_age_seconds`) and the store's totals as counters
/// (`oncely_messages_enqueued_total`, `…_delivered_total`, `…_retried_total`,
/// `…_dead_lettered_total`, `…_dropped_total`); per inbox scope, its records by state
/// (`oncely_inbox_records{scope, state}`, state `in_progress`, `seen`, `succeeded`, `failed` for
/// live records and `expired` for those awaiting collection). Label values are escaped as the
/// format says.
pub fn render(snapshot: &Snapshot) -> String {
    let mut families = vec![
        Family {
            name: "oncely_queue_messages",
            kind: "gauge",
            help: "Messages in an outbox queue, by state (ready, scheduled, leased, dead).",
            samples: Vec::new(),
        },
        Family {
            name: "oncely_queue_oldest_age_seconds",
            kind: "gauge",
            help: "Age of the oldest pending (ready, scheduled or leased) message of a queue.",
            samples: Vec::new(),
        },
    ];
    let counters: [Counter; 5] = [
        ("oncely_messages_enqueued_total", "Messages added to a queue.", |c| c.enqueued),
        ("oncely_messages_delivered_total", "Messages acknowledged as delivered.", |c| c.delivered),
        ("oncely_messages_retried_total", "Failed attempts scheduled for a retry.", |c| c.retried),
        ("oncely_messages_dead_lettered_total", "Messages given up on (dead letters).", |c| c.dead_lettered),
        (
            "oncely_messages_dropped_total",
            "At-most-once messages whose one attempt failed or ran out (lost by design).",
            |c| c.dropped,
        ),
    ];
    for (name, help, _) in &counters {
        families.push(Family { name, kind: "counter", help, samples: Vec::new() });
    }
    for q in &snapshot.queues {
        let s = &q.stats;
        for (state, n) in
            [("ready", s.ready), ("scheduled", s.scheduled), ("leased", s.leased), ("dead", s.dead)]
        {
            families[0].samples.push((vec![("queue", q.queue.as_str()), ("state", state)], n as f64));
        }
        let age = q.oldest_age.map_or(0.0, |a| a.as_secs_f64());
        families[1].samples.push((vec![("queue", q.queue.as_str())], age));
        for (i, (_, _, get)) in counters.iter().enumerate() {
            families[2 + i].samples.push((vec![("queue", q.queue.as_str())], get(&s.counts) as f64));
        }
    }
    let mut inbox = Family {
        name: "oncely_inbox_records",
        kind: "gauge",
        help: "Inbox records of a scope, by state (in_progress, seen, succeeded, failed: live; expired: awaiting collection).",
        samples: Vec::new(),
    };
    for c in &snapshot.scopes {
        for (state, n) in [
            ("in_progress", c.in_progress),
            ("seen", c.seen),
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("expired", c.expired),
        ] {
            inbox.samples.push((vec![("scope", c.scope.as_str()), ("state", state)], n as f64));
        }
    }
    families.push(inbox);
    let mut out = String::new();
    for f in &families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// A label value as the format writes it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::QueueSnapshot;
    use crate::records::{QueueCounts, QueueStats};

    #[test]
    fn queues_become_labelled_samples_and_names_are_escaped() {
        let snap = Snapshot {
            queues: vec![QueueSnapshot {
                queue: "pay\"ments\\\n".into(),
                stats: QueueStats {
                    ready: 3,
                    dead: 1,
                    counts: QueueCounts { enqueued: 7, delivered: 3, ..QueueCounts::default() },
                    ..QueueStats::default()
                },
                oldest_age: Some(std::time::Duration::from_millis(1500)),
            }],
            scopes: vec![crate::records::ScopeCounts {
                scope: "orders\"".into(),
                in_progress: 2,
                succeeded: 5,
                ..Default::default()
            }],
        };
        let text = render(&snap);
        assert!(text.contains("# TYPE oncely_queue_messages gauge\n"), "{text}");
        assert!(
            text.contains("oncely_queue_messages{queue=\"pay\\\"ments\\\\\\n\",state=\"ready\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("oncely_queue_oldest_age_seconds{queue=\"pay\\\"ments\\\\\\n\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("oncely_messages_enqueued_total{queue=\"pay\\\"ments\\\\\\n\"} 7\n"), "{text}");
        assert!(text.contains("# TYPE oncely_inbox_records gauge\n"), "{text}");
        assert!(
            text.contains("oncely_inbox_records{scope=\"orders\\\"\",state=\"in_progress\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("oncely_inbox_records{scope=\"orders\\\"\",state=\"succeeded\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("oncely_inbox_records{scope=\"orders\\\"\",state=\"expired\"} 0\n"), "{text}");
    }
}
