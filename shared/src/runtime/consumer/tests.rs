use super::*;
use rumqttc::{Publish, QoS};

/// A consumer that stores numbers: "panic-prepare" panics while preparing, "panic-commit"
/// while committing, "refuse" is refused by the "database" for what it holds, and the first
/// `busy` commits fail as if the database were unreachable.
#[derive(Default)]
struct Fake {
    stored: Vec<String>,
    rejected: Vec<(String, &'static str)>,
    recovered: usize,
    busy: usize,
    commits: usize,
}

impl BatchConsumer for Fake {
    type Item = Result<String, (&'static str, String)>;
    type Committed = Vec<String>;

    fn prepare(&mut self, r: &Received, _now: DateTime<Utc>) -> Self::Item {
        prepare_text(r)
    }
    fn rejected(&mut self, r: &Received, reason: &'static str, _error: String) -> Self::Item {
        Err((reason, String::from_utf8_lossy(&r.publish.payload).to_string()))
    }
    async fn commit(&mut self, _b: &[Received], items: &[Self::Item], _now: DateTime<Utc>) -> Result<Vec<String>, CommitError> {
        self.commits += 1;
        if self.busy > 0 {
            self.busy -= 1;
            return Err(CommitError::Transient(sqlx::Error::PoolTimedOut));
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Ok(t) if t == "panic-commit" => {
                    guard(|| panic!("a detection bug")).map_err(|error| CommitError::Poisoned { index: i, error })?;
                }
                Ok(t) if t == "refuse" => return Err(CommitError::Permanent(sqlx::Error::RowNotFound)),
                Ok(t) => out.push(t.clone()),
                Err(_) => {}
            }
        }
        Ok(out)
    }
    async fn recover(&mut self, _out: &Publisher) {
        self.recovered += 1;
    }
    async fn finish(&mut self, _out: &Publisher, _b: &[Received], items: &[Self::Item], committed: Vec<String>) {
        self.stored.extend(committed);
        self.rejected.extend(items.iter().filter_map(|i| i.as_ref().err().map(|(r, t)| (t.clone(), *r))));
    }
    fn reload(&mut self, _reload: Reload) {}
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

fn prepare_text(r: &Received) -> Result<String, (&'static str, String)> {
    let text = String::from_utf8_lossy(&r.publish.payload).to_string();
    assert!(text != "panic-prepare", "a parser bug");
    Ok(text)
}

fn batch(texts: &[&str]) -> Vec<Received> {
    texts.iter().map(|t| Received::new(Publish::new("t", QoS::AtLeastOnce, t.as_bytes().to_vec()))).collect()
}

async fn run(fake: &mut Fake, texts: &[&str]) {
    let (out, _rx) = Publisher::unconnected();
    assert!(process(fake, &out, &batch(texts), &CancellationToken::new()).await);
}

#[tokio::test]
async fn a_panic_while_preparing_rejects_that_message_alone() {
    let mut f = Fake::default();
    run(&mut f, &["a", "panic-prepare", "b"]).await;
    assert_eq!(f.stored, ["a", "b"]);
    assert_eq!(f.rejected, [("panic-prepare".to_string(), "internal_error")]);
}

#[tokio::test]
async fn messages_prepared_on_their_own_task_keep_their_order_and_a_panic_there_rejects_one_alone() {
    let (tx, rx) = mpsc::channel(16);
    let mut incoming = Incoming::start(rx, Some(Arc::new(prepare_text)));
    for r in batch(&["a", "panic-prepare", "b", "c"]) {
        tx.send(r).await.expect("send");
    }
    drop(tx);
    let (mut taken, mut prepared) = (Vec::new(), Vec::new());
    while let Some((r, p)) = incoming.recv().await {
        assert!(p.is_some(), "prepared before the loop takes it");
        taken.push(r);
        prepared.push(p);
    }
    let mut f = Fake::default();
    let (out, _rx) = Publisher::unconnected();
    assert!(process_prepared(&mut f, &out, &taken, prepared, &CancellationToken::new()).await);
    assert_eq!(f.stored, ["a", "b", "c"]);
    assert_eq!(f.rejected, [("panic-prepare".to_string(), "internal_error")]);
}

#[tokio::test]
async fn a_panic_while_committing_rejects_that_message_and_rebuilds_state() {
    let mut f = Fake::default();
    run(&mut f, &["a", "b", "panic-commit", "c"]).await;
    assert_eq!(f.stored, ["a", "b", "c"]);
    assert_eq!(f.rejected, [("panic-commit".to_string(), "internal_error")]);
    assert_eq!(f.recovered, 1, "state is rebuilt before the rest is committed");
}

#[tokio::test]
async fn a_message_the_database_refuses_is_found_by_splitting_and_the_rest_is_committed() {
    let mut f = Fake::default();
    let texts: Vec<String> = (0..50).map(|i| if i == 37 { "refuse".into() } else { format!("m{i}") }).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    run(&mut f, &refs).await;
    let want: Vec<String> = texts.iter().filter(|t| *t != "refuse").cloned().collect();
    assert_eq!(f.stored, want, "every other message committed, in order");
    assert_eq!(f.rejected, [("refuse".to_string(), "storage_error")]);
    assert!(f.commits <= 2 * 7 + 2, "found by halving, not one by one: {} commits", f.commits);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_database_holds_the_batch_back_only_while_it_lasts() {
    let mut f = Fake { busy: 3, ..Fake::default() };
    run(&mut f, &["a", "b"]).await;
    assert_eq!(f.stored, ["a", "b"]);
    assert!(f.rejected.is_empty(), "a transient failure rejects nothing");
    assert_eq!(f.commits, 4);
}
