//! Every statement the flagger runs, one named function each. The flagger owns `flagger_calls`,
//! `flagger_repeat_flags`, `flagger_mh_flags` and `flagger_flag_messages`, and the view
//! `flagger_caller_calls` through which the desk reads call history.

use crate::detect::repeat::CallAttrs;
use crate::detect::FlagMeta;
use futures::TryStreamExt;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::{AgeBand, Channel, Identity, Severity};
use lantern_shared::store::{with_list, Db, Tx, CHUNK};
use lantern_shared::{with_db, with_tx};

/// One counted call as stored.
pub struct CallRow<'a> {
    pub call_id: &'a str,
    pub event_id: &'a str,
    pub occurred_ms: i64,
    pub channel: Channel,
    pub division: Option<&'a str>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub communal: Option<bool>,
    pub age_band: Option<AgeBand>,
}

/// A call held in history, as read back: identities, event time, filter attributes.
pub struct HistoryRow {
    pub phone: Option<CallerRef>,
    pub address: Option<CallerRef>,
    pub occurred_ms: i64,
    pub attrs: CallAttrs,
}

/// A call's mental-health flag as stored.
pub struct MhFlagRow {
    pub call_id: String,
    pub flag_uuid: u128,
    pub severity: Severity,
    pub occurred_ms: i64,
    pub raised_ms: i64,
}

/// A repeat-caller flag as stored.
pub struct RepeatFlagRow {
    pub identity: Identity,
    pub caller_ref: CallerRef,
    pub flag_uuid: u128,
    pub t0_ms: i64,
    pub raised_ms: i64,
}

/// A flag message waiting in the outbox.
pub struct MessageRow {
    pub seq: i64,
    pub topic: String,
    pub payload: String,
}

fn parse_mh(call_id: String, flag_id: &str, severity: &str, occurred_ms: i64, raised_ms: i64) -> Option<MhFlagRow> {
    Some(MhFlagRow {
        call_id,
        flag_uuid: uuid::Uuid::parse_str(flag_id).ok()?.as_u128(),
        severity: Severity::parse(severity)?,
        occurred_ms,
        raised_ms,
    })
}

/// The highest outbox sequence number so far (0 when empty).
pub async fn max_seq(db: &Db) -> Result<i64, sqlx::Error> {
    let q = "SELECT MAX(seq) FROM flagger_flag_messages";
    let max: Option<i64> = with_db!(db, |pool| sqlx::query_scalar(q).fetch_one(pool).await)?;
    Ok(max.unwrap_or(0))
}

/// The event time of the newest call held, if any.
pub async fn latest_call_ms(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    with_db!(db, |pool| sqlx::query_scalar("SELECT MAX(occurred_ms) FROM flagger_calls").fetch_one(pool).await)
}

/// Calls read back per SQLite statement at start-up, joined into one text value.
const HISTORY_BLOCK: i64 = 1024;

/// Streams every call with event time from `from_ms` into `each`: holding them all at once
/// would double the memory at start-up.
///
/// SQLite hands each row from its worker thread to ours on its own, one wake-up and a copy of
/// every value per row, and that, not SQLite, was most of start-up's time. So on SQLite the
/// calls come in blocks, each block one text value with a line per call (`phone address ms
/// channel communal age`, empty where absent; pseudonyms and these names hold no spaces),
/// read by rowid so each block continues where the last ended.
pub async fn each_call_since(db: &Db, from_ms: i64, mut each: impl FnMut(HistoryRow)) -> Result<(), sqlx::Error> {
    let mut deliver =
        |phone: Option<&str>, address: Option<&str>, occurred_ms: i64, channel: &str, communal: Option<i64>, age: Option<&str>| {
            let attrs =
                CallAttrs::new(Channel::parse(channel).unwrap_or(Channel::Other), communal.map(|c| c != 0), age.and_then(AgeBand::parse));
            each(HistoryRow { phone: phone.and_then(CallerRef::parse), address: address.and_then(CallerRef::parse), occurred_ms, attrs });
        };
    match db {
        Db::Sqlite(pool) => {
            // `+occurred_ms` keeps SQLite on the table's own rowid order rather than the time
            // index, so each block is a range of the table, not a sort of everything after it.
            let q = "SELECT MAX(id), group_concat(line, char(10)) FROM ( \
                       SELECT rowid AS id, coalesce(phone_ref, '') || ' ' || coalesce(address_ref, '') || ' ' || occurred_ms || ' ' \
                              || channel || ' ' || coalesce(communal, '') || ' ' || coalesce(age_band, '') AS line \
                       FROM flagger_calls WHERE rowid > $1 AND +occurred_ms >= $2 ORDER BY rowid LIMIT $3)";
            // SQLite builds the next block while this task reads the one before: a task of its
            // own runs the queries, with at most two blocks waiting. They all run on one
            // connection, which gives back its page cache at the end: each connection keeps up
            // to 2 MiB of pages, and blocks spread over the pool's four filled all four, about
            // 40 bytes per call of a 90-day history held after start-up.
            let (blocks, mut received) = tokio::sync::mpsc::channel::<String>(2);
            let pool = pool.clone();
            let reader = tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                let mut after = i64::MIN;
                loop {
                    let (last, block): (Option<i64>, Option<String>) =
                        sqlx::query_as(q).bind(after).bind(from_ms).bind(HISTORY_BLOCK).fetch_one(&mut *conn).await?;
                    let (Some(last), Some(block)) = (last, block) else { break };
                    if blocks.send(block).await.is_err() {
                        break;
                    }
                    after = last;
                }
                sqlx::query("PRAGMA shrink_memory").execute(&mut *conn).await?;
                Ok::<(), sqlx::Error>(())
            });
            // Left early (this future dropped), the reader task is aborted.
            let reader = tokio_util::task::AbortOnDropHandle::new(reader);
            while let Some(block) = received.recv().await {
                for line in block.split('\n') {
                    let mut field = line.split(' ').map(|f| Some(f).filter(|f| !f.is_empty()));
                    let mut next = || field.next().flatten();
                    let (phone, address, ms, channel, communal, age) = (next(), next(), next(), next(), next(), next());
                    let (Some(ms), Some(channel)) = (ms.and_then(|m| m.parse().ok()), channel) else { continue };
                    deliver(phone, address, ms, channel, communal.and_then(|c| c.parse().ok()), age);
                }
            }
            // The blocks stop when the reader returns: its result says whether it read the last
            // one, or a query failed, or it panicked (which would otherwise leave the history short).
            reader.await.map_err(|e| sqlx::Error::Protocol(format!("reading the caller history failed: {e}")))?
        }
        Db::Postgres(pool) => {
            type Row = (Option<String>, Option<String>, i64, String, Option<i16>, Option<String>);
            let q = "SELECT phone_ref, address_ref, occurred_ms, channel, communal, age_band FROM flagger_calls WHERE occurred_ms >= $1";
            let mut rows = sqlx::query_as::<_, Row>(q).bind(from_ms).fetch(pool);
            while let Some((phone, address, ms, channel, communal, age)) = rows.try_next().await? {
                deliver(phone.as_deref(), address.as_deref(), ms, &channel, communal.map(i64::from), age.as_deref());
            }
            Ok(())
        }
    }
}

/// Repeat-caller flags raised from `from_ms` (event time).
pub async fn repeat_flags_since(db: &Db, from_ms: i64) -> Result<Vec<RepeatFlagRow>, sqlx::Error> {
    let q = "SELECT identity, caller_ref, flag_id, t0_ms, raised_ms FROM flagger_repeat_flags WHERE t0_ms >= $1";
    let rows: Vec<(String, String, String, i64, i64)> = with_db!(db, |pool| sqlx::query_as(q).bind(from_ms).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(identity, r, flag_id, t0_ms, raised_ms)| {
            Some(RepeatFlagRow {
                identity: Identity::parse(&identity).unwrap_or(Identity::Phone),
                caller_ref: CallerRef::parse(&r)?,
                flag_uuid: uuid::Uuid::parse_str(&flag_id).ok()?.as_u128(),
                t0_ms,
                raised_ms,
            })
        })
        .collect())
}

/// Mental-health flags of calls from `from_ms` (event time).
pub async fn mh_flags_since(db: &Db, from_ms: i64) -> Result<Vec<MhFlagRow>, sqlx::Error> {
    let q = "SELECT call_id, flag_id, severity, occurred_ms, raised_ms FROM flagger_mh_flags WHERE occurred_ms >= $1";
    let rows: Vec<(String, String, String, i64, i64)> = with_db!(db, |pool| sqlx::query_as(q).bind(from_ms).fetch_all(pool).await)?;
    Ok(rows.into_iter().filter_map(|(c, f, s, o, r)| parse_mh(c, &f, &s, o, r)).collect())
}

/// Marks outbox messages `first..=last` published at `now_ms`, for each range.
pub async fn mark_published(tx: &mut Tx<'_>, ranges: &[(i64, i64)], now_ms: i64) -> Result<(), sqlx::Error> {
    let q = "UPDATE flagger_flag_messages SET published_ms = $1 WHERE seq >= $2 AND seq <= $3 AND published_ms IS NULL";
    for (first, last) in ranges {
        with_tx!(tx, |c| sqlx::query(q).bind(now_ms).bind(*first).bind(*last).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Which of these calls are stored already, each with its mental-health flag if it has one.
pub async fn known_calls(tx: &mut Tx<'_>, call_ids: &[&str]) -> Result<Vec<(String, Option<MhFlagRow>)>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in call_ids.chunks(CHUNK) {
        type Row = (String, Option<String>, Option<String>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = with_tx!(tx, |c| {
            let sql = "SELECT c.call_id, m.flag_id, m.severity, m.occurred_ms, m.raised_ms FROM flagger_calls c \
                       LEFT JOIN flagger_mh_flags m ON m.call_id = c.call_id WHERE c.call_id IN ";
            with_list(sql, chunk).build_query_as().fetch_all(&mut **c).await
        })?;
        for (call_id, flag_id, severity, occurred, raised) in rows {
            let flag = match (flag_id, severity, occurred, raised) {
                (Some(f), Some(s), Some(o), Some(r)) => parse_mh(call_id.clone(), &f, &s, o, r),
                _ => None,
            };
            out.push((call_id, flag));
        }
    }
    Ok(out)
}

pub async fn insert_calls(tx: &mut Tx<'_>, rows: &[CallRow<'_>], now_ms: i64) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO flagger_calls (call_id, event_id, occurred_ms, channel, division, phone_ref, address_ref, communal, age_band, received_ms) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.call_id)
                    .push_bind(r.event_id)
                    .push_bind(r.occurred_ms)
                    .push_bind(r.channel.as_str())
                    .push_bind(r.division)
                    .push_bind(r.phone.as_deref())
                    .push_bind(r.address.as_deref())
                    .push_bind(r.communal.map(i16::from))
                    .push_bind(r.age_band.map(|a| a.as_str()))
                    .push_bind(now_ms);
            });
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Newly raised repeat-caller flags: (flag id, what the flagger keeps, caller reference).
pub async fn insert_repeat_flags(tx: &mut Tx<'_>, rows: &[(String, FlagMeta, String)]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO flagger_repeat_flags (flag_id, identity, caller_ref, t0_ms, raised_ms) ");
            q.push_values(chunk, |mut b, (id, meta, r)| {
                b.push_bind(id.as_str())
                    .push_bind(meta.identity.map(Identity::as_str).unwrap_or("phone"))
                    .push_bind(r.as_str())
                    .push_bind(meta.t0_ms)
                    .push_bind(meta.raised_ms);
            });
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Newly raised mental-health flags: (call, flag id, severity, event time). A call older than
/// the history kept may still have a flag here: the newest flag for the call is the one kept.
pub async fn upsert_mh_flags(tx: &mut Tx<'_>, rows: &[(String, String, Severity, i64)], now_ms: i64) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO flagger_mh_flags (call_id, flag_id, severity, occurred_ms, raised_ms) ");
            q.push_values(chunk, |mut b, (call, id, severity, occurred)| {
                b.push_bind(call.as_str()).push_bind(id.as_str()).push_bind(severity.as_str()).push_bind(*occurred).push_bind(now_ms);
            });
            q.push(
                " ON CONFLICT (call_id) DO UPDATE SET flag_id = excluded.flag_id, severity = excluded.severity, \
                 occurred_ms = excluded.occurred_ms, raised_ms = excluded.raised_ms",
            );
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

pub async fn update_mh_severity(tx: &mut Tx<'_>, call_id: &str, severity: Severity) -> Result<(), sqlx::Error> {
    let q = "UPDATE flagger_mh_flags SET severity = $1 WHERE call_id = $2";
    with_tx!(tx, |c| sqlx::query(q).bind(severity.as_str()).bind(call_id).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// New outbox rows: (seq, flag id, topic, payload).
pub async fn insert_messages(tx: &mut Tx<'_>, rows: &[(i64, String, String, String)], now_ms: i64) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO flagger_flag_messages (seq, flag_id, topic, payload, created_ms) ");
            q.push_values(chunk, |mut b, (seq, id, topic, payload)| {
                b.push_bind(*seq).push_bind(id.as_str()).push_bind(topic.as_str()).push_bind(payload.as_str()).push_bind(now_ms);
            });
            q.build().execute(&mut **c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Up to `limit` outbox messages not yet published, after `after`, in order.
pub async fn unpublished(db: &Db, after: i64, limit: i64) -> Result<Vec<MessageRow>, sqlx::Error> {
    let q = "SELECT seq, topic, payload FROM flagger_flag_messages WHERE published_ms IS NULL AND seq > $1 ORDER BY seq LIMIT $2";
    let rows: Vec<(i64, String, String)> = with_db!(db, |pool| sqlx::query_as(q).bind(after).bind(limit).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(seq, topic, payload)| MessageRow { seq, topic, payload }).collect())
}

/// Cut-off times (ms) for pruning the flagger's tables, one per kind of record.
pub struct PruneBefore {
    pub calls: i64,
    pub flags: i64,
    pub messages: i64,
}

/// Deletes what is past its retention: calls by event time, flags by the time they were
/// raised for, published flag messages by creation. Unpublished messages are kept.
pub async fn prune(db: &Db, before: &PruneBefore) -> Result<u64, sqlx::Error> {
    let statements = [
        ("DELETE FROM flagger_calls WHERE occurred_ms < $1", before.calls),
        ("DELETE FROM flagger_repeat_flags WHERE t0_ms < $1", before.flags),
        ("DELETE FROM flagger_mh_flags WHERE occurred_ms < $1", before.flags),
        ("DELETE FROM flagger_flag_messages WHERE published_ms IS NOT NULL AND created_ms < $1", before.messages),
    ];
    let mut n = 0;
    for (q, cut) in statements {
        n += with_db!(db, |pool| sqlx::query(q).bind(cut).execute(pool).await.map(|r| r.rows_affected()))?;
    }
    Ok(n)
}

// Subject access and erasure (SPEC section 10).

/// A stored call: (call, event time, channel, division, phone ref, address ref).
pub type CallRecord = (String, i64, String, Option<String>, Option<String>, Option<String>);

/// Every record the flagger holds about these caller references (phone or address).
#[derive(Debug, Default, serde::Serialize)]
pub struct CallerRecords {
    pub calls: Vec<CallRecord>,
    /// (flag, identity, caller ref, raised for, raised at)
    pub repeat_flags: Vec<(String, String, String, i64, i64)>,
    /// (call, flag, severity, event time, raised at)
    pub mental_health_flags: Vec<(String, String, String, i64, i64)>,
    /// (seq, flag, topic, payload, created)
    pub flag_messages: Vec<(i64, String, String, String, i64)>,
}

impl CallerRecords {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.repeat_flags.is_empty() && self.mental_health_flags.is_empty() && self.flag_messages.is_empty()
    }

    /// Every flag id among these records.
    pub fn flag_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.repeat_flags.iter().map(|f| f.0.clone()).chain(self.mental_health_flags.iter().map(|f| f.1.clone())).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// What the flagger holds about `refs`: their calls, the flags raised on their identities or
/// their calls, and the flag messages of those flags.
pub async fn caller_records(tx: &mut Tx<'_>, refs: &[&str]) -> Result<CallerRecords, sqlx::Error> {
    let mut out = CallerRecords::default();
    if refs.is_empty() {
        return Ok(out);
    }
    for r in refs {
        let q = "SELECT call_id, occurred_ms, channel, division, phone_ref, address_ref FROM flagger_calls \
                 WHERE phone_ref = $1 OR address_ref = $1 ORDER BY occurred_ms";
        out.calls.extend(with_tx!(tx, |c| sqlx::query_as(q).bind(*r).fetch_all(&mut **c).await)?);
        let q = "SELECT flag_id, identity, caller_ref, t0_ms, raised_ms FROM flagger_repeat_flags WHERE caller_ref = $1 ORDER BY t0_ms";
        out.repeat_flags.extend(with_tx!(tx, |c| sqlx::query_as(q).bind(*r).fetch_all(&mut **c).await)?);
    }
    out.calls.sort_by_key(|c| (c.1, c.0.clone()));
    out.calls.dedup();
    let call_ids: Vec<&str> = out.calls.iter().map(|c| c.0.as_str()).collect();
    for chunk in call_ids.chunks(CHUNK) {
        let sql = "SELECT call_id, flag_id, severity, occurred_ms, raised_ms FROM flagger_mh_flags WHERE call_id IN ";
        out.mental_health_flags.extend(with_tx!(tx, |c| with_list(sql, chunk).build_query_as().fetch_all(&mut **c).await)?);
    }
    let flag_ids = out.flag_ids();
    let ids: Vec<&str> = flag_ids.iter().map(String::as_str).collect();
    for chunk in ids.chunks(CHUNK) {
        let sql = "SELECT seq, flag_id, topic, payload, created_ms FROM flagger_flag_messages WHERE flag_id IN ";
        out.flag_messages.extend(with_tx!(tx, |c| with_list(sql, chunk).build_query_as().fetch_all(&mut **c).await)?);
    }
    Ok(out)
}

/// Deletes the records [`caller_records`] finds. Counts elsewhere (demand's, the desk's) keep
/// the calls; the rules here simply no longer see them.
pub async fn erase_caller(tx: &mut Tx<'_>, records: &CallerRecords) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    let call_ids: Vec<&str> = records.calls.iter().map(|c| c.0.as_str()).collect();
    let flag_ids = records.flag_ids();
    let flag_ids: Vec<&str> = flag_ids.iter().map(String::as_str).collect();
    let deletes: [(&str, &[&str]); 4] = [
        ("DELETE FROM flagger_calls WHERE call_id IN ", &call_ids),
        ("DELETE FROM flagger_repeat_flags WHERE flag_id IN ", &flag_ids),
        ("DELETE FROM flagger_mh_flags WHERE flag_id IN ", &flag_ids),
        ("DELETE FROM flagger_flag_messages WHERE flag_id IN ", &flag_ids),
    ];
    for (sql, ids) in deletes {
        for chunk in ids.chunks(CHUNK) {
            n += with_tx!(tx, |c| with_list(sql, chunk).build().execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
    }
    Ok(n)
}

// What the early-action reports read (SPEC section 11), through these functions only.

/// For each of these caller references, the event times of its distinct calls in
/// `[from_ms, to_ms)`, by phone or by address.
pub async fn call_times(
    db: &Db,
    refs: &[&str],
    from_ms: i64,
    to_ms: i64,
) -> Result<std::collections::HashMap<String, Vec<i64>>, sqlx::Error> {
    let mut seen: std::collections::HashMap<String, std::collections::BTreeMap<String, i64>> = std::collections::HashMap::new();
    for column in ["phone_ref", "address_ref"] {
        for chunk in refs.chunks(CHUNK) {
            let sql = format!("SELECT {column}, call_id, occurred_ms FROM flagger_calls WHERE {column} IN ");
            let rows: Vec<(String, String, i64)> = with_db!(db, |pool| {
                let mut q = with_list(sql.clone(), chunk);
                q.push(" AND occurred_ms >= ").push_bind(from_ms).push(" AND occurred_ms < ").push_bind(to_ms);
                q.build_query_as().fetch_all(pool).await
            })?;
            for (r, call, at) in rows {
                seen.entry(r).or_default().insert(call, at);
            }
        }
    }
    Ok(seen.into_iter().map(|(r, calls)| (r, calls.into_values().collect())).collect())
}

/// Each identity's first repeat-caller flag raised for a call in `[from_ms, to_ms)` (event
/// time): (caller reference, identity, when).
pub async fn first_repeat_flags(db: &Db, from_ms: i64, to_ms: i64) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let q =
        "SELECT caller_ref, identity, MIN(t0_ms) FROM flagger_repeat_flags WHERE t0_ms >= $1 AND t0_ms < $2 GROUP BY caller_ref, identity";
    with_db!(db, |pool| sqlx::query_as(q).bind(from_ms).bind(to_ms).fetch_all(pool).await)
}

/// The callers with most distinct calls in `[from_ms, to_ms)`: (caller reference, identity,
/// calls), most first.
pub async fn most_frequent(db: &Db, from_ms: i64, to_ms: i64, limit: i64) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let q = "SELECT ref, identity, n FROM ( \
               SELECT phone_ref AS ref, 'phone' AS identity, COUNT(*) AS n FROM flagger_calls \
                 WHERE phone_ref IS NOT NULL AND occurred_ms >= $1 AND occurred_ms < $2 GROUP BY phone_ref \
               UNION ALL \
               SELECT address_ref AS ref, 'address' AS identity, COUNT(*) AS n FROM flagger_calls \
                 WHERE address_ref IS NOT NULL AND occurred_ms >= $1 AND occurred_ms < $2 GROUP BY address_ref \
             ) t ORDER BY n DESC, ref LIMIT $3";
    with_db!(db, |pool| sqlx::query_as(q).bind(from_ms).bind(to_ms).bind(limit).fetch_all(pool).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start-up reads history back in blocks: every call from the start time on comes back
    /// once, with every field as stored, across several blocks and with fields left empty.
    #[tokio::test]
    async fn history_read_back_in_blocks_is_every_call_since_the_start_once() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.expect("a database");
        let n = 3 * HISTORY_BLOCK + 17;
        let refs: Vec<String> = (0..50u8).map(|i| CallerRef::from_u128(u128::from(i) * 0x0101_0101_0101_0101_0101).to_string()).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("call-{i}")).collect();
        let rows: Vec<CallRow> = (0..n)
            .map(|i| {
                let at = |m: i64| usize::try_from(i % m).unwrap_or(0);
                CallRow {
                    call_id: &ids[at(n)],
                    event_id: &ids[at(n)],
                    // Stored out of time order, as late events are.
                    occurred_ms: (i * 7919) % n,
                    channel: Channel::ALL[at(4)],
                    division: None,
                    phone: (i % 5 != 0).then(|| refs[at(50)].clone()),
                    address: (i % 3 != 0).then(|| refs[at(47)].clone()),
                    communal: [None, Some(true), Some(false)][at(3)],
                    age_band: [None, Some(AgeBand::Under18), Some(AgeBand::Adult), Some(AgeBand::Unknown)][at(4)],
                }
            })
            .collect();
        let mut tx = db.begin().await.expect("a transaction");
        insert_calls(&mut tx, &rows, 0).await.expect("insert");
        tx.commit().await.expect("commit");

        let from = 100;
        let mut read = Vec::new();
        each_call_since(&db, from, |r| read.push((r.occurred_ms, r.phone, r.address, r.attrs.bits()))).await.expect("read back");
        let mut expected: Vec<_> = rows
            .iter()
            .filter(|r| r.occurred_ms >= from)
            .map(|r| {
                let parse = |p: &Option<String>| p.as_deref().and_then(CallerRef::parse);
                (r.occurred_ms, parse(&r.phone), parse(&r.address), CallAttrs::new(r.channel, r.communal, r.age_band).bits())
            })
            .collect();
        read.sort_by_key(|r| r.0);
        expected.sort_by_key(|r| r.0);
        assert_eq!(read.len(), usize::try_from(n - from).unwrap_or(0));
        assert_eq!(read, expected);
        db.close().await;
    }
}
