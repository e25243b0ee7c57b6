//! The admin commands on an existing oncely store (an SQLite file or a PostgreSQL database):
//! `stats`, `dead-letters`, `gc`.
//!
//! Each opens the store through the core (which identifies it and refuses a foreign or damaged
//! one with `corrupt_store`, leaving it untouched; these commands never create a store) and then
//! only calls the core's outbox and inbox APIs.

use std::path::Path;

use oncely::outbox::{MessageState, OutboxRecord};
use oncely::{
    AnyStore, Inbox, InboxConfig, Outbox, OutboxConfig, OutboxStore, PostgresConfig, PostgresStore,
    SqliteConfig, SqliteStore,
};

use crate::error::CliError;
use crate::progress::Progress;
use crate::{StoreArgs, fmt};

/// Opens the store at `path` (an SQLite file, or a `postgres://` URL), which must already
/// exist: these commands never create a store.
pub fn open_existing(path: &Path) -> Result<AnyStore, CliError> {
    let location = path.to_string_lossy();
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        let config = PostgresConfig { pool_size: 2, create_if_missing: false, ..PostgresConfig::default() };
        return PostgresStore::open(&location, config)
            .map(AnyStore::Postgres)
            .map_err(|e| CliError::store(path, e));
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::Failed(format!(
                "{}: no such file (this command opens an existing oncely store and never creates one)",
                path.display()
            )));
        }
        Err(e) => return Err(CliError::Failed(format!("{}: {e}", path.display()))),
    };
    if !meta.is_file() {
        return Err(CliError::Failed(format!("{}: not a file", path.display())));
    }
    if meta.len() == 0 {
        // SQLite would take an empty file for a new database, and the core would initialise it.
        return Err(CliError::store(
            path,
            oncely::Error::CorruptStore("the file is empty, not an oncely store".into()),
        ));
    }
    SqliteStore::open(path, SqliteConfig::default())
        .map(AnyStore::Sqlite)
        .map_err(|e| CliError::store(path, e))
}

/// The outboxes the command works on: the one named by `--queue`, or every queue holding
/// messages.
async fn outboxes(store: &AnyStore, args: &StoreArgs) -> Result<Vec<Outbox<AnyStore>>, CliError> {
    let names = match &args.queue {
        Some(q) => vec![q.clone()],
        None => store.queue_names().await.map_err(|e| CliError::store(&args.db, e))?,
    };
    names
        .into_iter()
        .map(|q| Outbox::open(store.clone(), OutboxConfig::new(q)).map_err(CliError::from))
        .collect()
}

fn queue_word(args: &StoreArgs) -> String {
    match &args.queue {
        Some(q) => format!("queue `{q}`"),
        None => "any queue".into(),
    }
}

/// Every dead letter of `outbox`, oldest first.
async fn all_dead(outbox: &Outbox<AnyStore>) -> Result<Vec<OutboxRecord>, CliError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = outbox.dead_letters(after, 500).await?;
        after = page.last().map(|r| r.seq);
        let done = page.len() < 500;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

fn dead_reason(rec: &OutboxRecord) -> &str {
    match &rec.state {
        MessageState::Dead { reason } => reason,
        _ => "",
    }
}

/// `oncely stats`.
pub async fn stats(args: &StoreArgs) -> Result<(), CliError> {
    let store = open_existing(&args.db)?;
    let outboxes = outboxes(&store, args).await?;
    if outboxes.is_empty() {
        println!(
            "no messages in any outbox queue of {} (a queue shows once it holds messages)",
            shown(&args.db)
        );
        return Ok(());
    }
    let width = outboxes.iter().map(|o| o.config().queue.chars().count()).max().unwrap_or(0).max(5);
    println!(
        "{:<width$}  {:>8}  {:>9}  {:>8}  {:>8}  {:>8}  oldest pending",
        "queue", "ready", "scheduled", "leased", "dead", "depth"
    );
    for outbox in &outboxes {
        let s = outbox.stats().await.map_err(|e| CliError::store(&args.db, e))?;
        let q = &s.queue;
        println!(
            "{:<width$}  {:>8}  {:>9}  {:>8}  {:>8}  {:>8}  {}",
            outbox.config().queue,
            q.ready,
            q.scheduled,
            q.leased,
            q.dead,
            q.depth(),
            s.oldest_age.map_or_else(|| "-".to_owned(), |age| format!("{} old", fmt::duration(age))),
        );
    }
    Ok(())
}

/// `oncely dead-letters list`.
pub async fn dead_list(args: &StoreArgs) -> Result<(), CliError> {
    let store = open_existing(&args.db)?;
    let mut rows = Vec::new();
    for outbox in outboxes(&store, args).await? {
        for rec in all_dead(&outbox).await.map_err(|e| with_path(e, &args.db))? {
            rows.push((outbox.config().queue.clone(), rec));
        }
    }
    if rows.is_empty() {
        println!("no dead letters in {}", queue_word(args));
        return Ok(());
    }
    let qw = rows.iter().map(|(q, _)| q.chars().count()).max().unwrap_or(0).max(5);
    let iw = rows.iter().map(|(_, r)| r.message.id.chars().count()).max().unwrap_or(0).clamp(2, 40);
    println!("{:<qw$}  {:<iw$}  {:>8}  {:<27}  reason", "queue", "id", "attempts", "created");
    for (queue, rec) in &rows {
        println!(
            "{:<qw$}  {:<iw$}  {:>8}  {:<27}  {}",
            queue,
            fmt::truncate(&rec.message.id, 40),
            rec.message.attempts,
            fmt::timestamp(rec.message.created_at),
            fmt::truncate(dead_reason(rec), 100),
        );
    }
    println!("{} dead letter{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    Ok(())
}

/// The queues in which `id` is a dead letter.
async fn find_dead(
    store: &AnyStore,
    args: &StoreArgs,
    id: &str,
) -> Result<Vec<(Outbox<AnyStore>, OutboxRecord)>, CliError> {
    let mut found = Vec::new();
    for outbox in outboxes(store, args).await? {
        if let Some(rec) = outbox.get(id).await.map_err(|e| with_path(e.into(), &args.db))? {
            if matches!(rec.state, MessageState::Dead { .. }) {
                found.push((outbox, rec));
            }
        }
    }
    Ok(found)
}

/// The single dead letter `id`, or a clear error when it is in no queue or in several.
async fn one_dead(
    store: &AnyStore,
    args: &StoreArgs,
    id: &str,
) -> Result<(Outbox<AnyStore>, OutboxRecord), CliError> {
    let mut found = find_dead(store, args, id).await?;
    match found.len() {
        0 => Err(CliError::Failed(format!(
            "no dead letter `{id}` in {} of {}",
            queue_word(args),
            shown(&args.db)
        ))),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<_> = found.iter().map(|(o, _)| o.config().queue.clone()).collect();
            Err(CliError::Usage(format!(
                "`{id}` is a dead letter in several queues ({}): pass --queue",
                names.join(", ")
            )))
        }
    }
}

/// `oncely dead-letters show ID`.
pub async fn dead_show(args: &StoreArgs, id: &str) -> Result<(), CliError> {
    let store = open_existing(&args.db)?;
    let (outbox, rec) = one_dead(&store, args, id).await?;
    let m = &rec.message;
    let opt_time = |t: Option<oncely::Timestamp>| t.map_or_else(|| "-".to_owned(), fmt::timestamp);
    println!("queue:         {}", outbox.config().queue);
    println!("id:            {}", m.id);
    println!("key:           {}", m.key.as_deref().unwrap_or("-"));
    println!("reason:        {}", dead_reason(&rec));
    println!("last error:    {}", rec.last_error.as_deref().unwrap_or("-"));
    println!("attempts:      {}", m.attempts);
    println!("created:       {}", fmt::timestamp(m.created_at));
    println!("first attempt: {}", opt_time(rec.first_attempt_at));
    println!("queue seq:     {}", rec.seq);
    if m.headers.is_empty() {
        println!("headers:       -");
    } else {
        for (i, (k, v)) in m.headers.iter().enumerate() {
            println!("{}{k}: {v}", if i == 0 { "headers:       " } else { "               " });
        }
    }
    println!("payload:       {}", fmt::payload(&m.payload));
    Ok(())
}

/// `oncely dead-letters replay ID...` / `--all`.
pub async fn dead_replay(args: &StoreArgs, ids: Vec<String>, all: bool) -> Result<(), CliError> {
    let store = open_existing(&args.db)?;
    if all != ids.is_empty() {
        return Err(CliError::Usage("name the dead letters to replay, or pass --all (not both)".into()));
    }
    if let [id] = ids.as_slice() {
        let (outbox, _) = one_dead(&store, args, id).await?;
        return if outbox.replay(id).await.map_err(|e| with_path(e.into(), &args.db))? {
            println!("replayed `{id}` in queue `{}`: attempts reset, deliverable now", outbox.config().queue);
            Ok(())
        } else {
            // Someone else replayed or purged it between the look-up and now.
            Err(CliError::Failed(format!(
                "`{id}` is no longer a dead letter in queue `{}`",
                outbox.config().queue
            )))
        };
    }
    // Many: every named one (or every dead letter) in the selected queues, with progress.
    let mut targets = Vec::new();
    for outbox in outboxes(&store, args).await? {
        let dead = all_dead(&outbox).await.map_err(|e| with_path(e, &args.db))?;
        let ids: Vec<String> =
            dead.into_iter().map(|r| r.message.id).filter(|id| all || ids.contains(id)).collect();
        targets.push((outbox, ids));
    }
    let total: usize = targets.iter().map(|(_, ids)| ids.len()).sum();
    let mut progress = Progress::new("replaying dead letters", Some(total as u64));
    let (mut replayed, mut found) = (0u64, std::collections::HashSet::new());
    for (outbox, ids) in &targets {
        for id in ids {
            if outbox.replay(id).await.map_err(|e| with_path(e.into(), &args.db))? {
                replayed += 1;
            }
            found.insert(id.as_str());
            progress.inc(1);
        }
    }
    progress.finish();
    println!("replayed {replayed} dead letter{}: attempts reset, deliverable now", plural(replayed));
    let missing: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !found.contains(id)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!("not a dead letter in {}: {}", queue_word(args), missing.join(", "))))
    }
}

/// How many dead letters one purge step deletes.
const PURGE_PAGE: usize = 500;

/// `oncely dead-letters purge [ID...]`.
pub async fn dead_purge(args: &StoreArgs, ids: Vec<String>) -> Result<(), CliError> {
    let store = open_existing(&args.db)?;
    let outboxes = outboxes(&store, args).await?;
    if ids.is_empty() {
        // Every dead letter, a page at a time, so a purge of millions shows its progress.
        let mut pages = Vec::new();
        for outbox in &outboxes {
            let dead = all_dead(outbox).await.map_err(|e| with_path(e, &args.db))?;
            pages.push(dead.into_iter().map(|r| r.message.id).collect::<Vec<_>>());
        }
        let total: usize = pages.iter().map(Vec::len).sum();
        let mut progress = Progress::new("purging dead letters", Some(total as u64));
        let mut total_purged = 0;
        for (outbox, ids) in outboxes.iter().zip(pages) {
            let mut n = 0;
            for chunk in ids.chunks(PURGE_PAGE) {
                n += outbox
                    .purge_dead(Some(chunk.to_vec()))
                    .await
                    .map_err(|e| CliError::store(&args.db, e))?;
                progress.inc(chunk.len() as u64);
            }
            if n > 0 {
                progress.suspend(|| {
                    println!("purged {n} dead letter{} from queue `{}`", plural(n), outbox.config().queue)
                });
            }
            total_purged += n;
        }
        progress.finish();
        println!("purged {total_purged} dead letter{} in total", plural(total_purged));
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut progress = Progress::new("purging dead letters", Some(ids.len() as u64));
    for id in &ids {
        let mut purged = false;
        for outbox in &outboxes {
            if outbox.purge_dead(Some(vec![id.clone()])).await.map_err(|e| CliError::store(&args.db, e))? > 0
            {
                progress.suspend(|| println!("purged `{id}` from queue `{}`", outbox.config().queue));
                purged = true;
            }
        }
        if !purged {
            missing.push(id.as_str());
        }
        progress.inc(1);
    }
    progress.finish();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!("not a dead letter in {}: {}", queue_word(args), missing.join(", "))))
    }
}

/// `oncely gc`.
pub async fn gc(path: &Path, scope: Option<&str>) -> Result<(), CliError> {
    if let Some(scope) = scope {
        return Err(CliError::Usage(format!(
            "--scope {scope}: purging one scope is not supported: oncely's purge_expired collects the expired \
             records of every scope at once (they are all past their dedup window). Run without --scope."
        )));
    }
    let store = open_existing(path)?;
    // Collected a batch at a time (each its own transaction), so a large collection shows its
    // progress and never holds the store's writer for long.
    const BATCH: usize = 10_000;
    // The scope is only needed to open an inbox; collecting works on the whole store, judged by
    // the store's clock (the server's on PostgreSQL).
    let inbox = Inbox::open(store, InboxConfig::new("oncely-cli")).map_err(CliError::from)?;
    let mut progress = Progress::new("collecting expired inbox records", None);
    let mut n = 0u64;
    loop {
        let got = inbox.purge_expired_up_to(BATCH).await.map_err(|e| CliError::store(path, e))?;
        n += got;
        progress.inc(got);
        if (got as usize) < BATCH {
            break;
        }
    }
    progress.finish();
    println!("purged {n} expired inbox record{} (every scope) from {}", plural(n), shown(path));
    Ok(())
}

/// How the store is named in messages: the path, or the URL without its password.
fn shown(path: &Path) -> String {
    oncely::store::postgres::redact(&path.to_string_lossy())
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Adds the store's path to an oncely error that lacks it.
fn with_path(e: CliError, path: &Path) -> CliError {
    match e {
        CliError::Oncely { path: None, error } => CliError::store(path, error),
        other => other,
    }
}
