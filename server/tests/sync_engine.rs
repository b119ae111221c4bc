//! The client state machine (`sqlite_ext::SyncEngine`) against the real server: a thin driver here
//! does only what a shell does (open sockets, move frames, honour instructions); every decision is the
//! engine's. Replicas are real SQLite files.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sqlite_ext::{Event, Fields, Instruction, Phase, Replica, Resolution, Schema, SyncEngine, Value};
use support::{TestServer, Ws, token};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

struct Shell {
    engine: SyncEngine,
    url: String,
    ws: Option<Ws>,
    changed: Vec<String>,
    conflicts: usize,
}

impl Shell {
    async fn open(path: &std::path::Path, url: &str, token: String) -> Shell {
        let replica = Replica::open(path, Schema::demo()).unwrap();
        let mut s = Shell {
            engine: SyncEngine::new(replica, token),
            url: url.to_owned(),
            ws: None,
            changed: Vec::new(),
            conflicts: 0,
        };
        s.event(Event::Start).await;
        s
    }

    /// Feeds one event and carries out the instructions (which may feed more events).
    async fn event(&mut self, event: Event) {
        let mut queue = vec![self.engine.handle(event).unwrap()];
        while let Some(instructions) = queue.pop() {
            for i in instructions {
                match i {
                    Instruction::Connect => {
                        self.ws = Some(connect_async(&self.url).await.unwrap().0);
                        queue.push(self.engine.handle(Event::Connected).unwrap());
                    }
                    Instruction::Send(text) => {
                        self.ws.as_mut().expect("connected").send(Message::text(text)).await.unwrap();
                    }
                    Instruction::Close => self.ws = None,
                    Instruction::SetTimer(_) => {}
                    Instruction::TablesChanged(t) => self.changed.extend(t),
                    Instruction::ConflictsRaised(c) => self.conflicts += c.len(),
                    Instruction::Rejected { .. }
                    | Instruction::Failed(_)
                    | Instruction::Fleet(_)
                    | Instruction::History { .. }
                    | Instruction::Customized { .. } => {}
                }
            }
        }
    }

    /// Moves frames from the socket into the engine until `done` holds (10 s at most).
    async fn until(&mut self, what: &str, done: impl Fn(&SyncEngine) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.engine) {
            let ws = self.ws.as_mut().expect("connected");
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = msg {
                self.event(Event::Frame(t.to_string())).await;
            }
        }
    }

    async fn go_offline(&mut self) {
        self.ws = None;
        self.event(Event::Disconnected(None)).await;
    }

    fn value(&self, id: &str, col: &str) -> Value {
        let pk = Fields(vec![("id".into(), Value::from(id))]);
        self.engine.replica().row("jobs", &pk).unwrap().unwrap().get(col).cloned().unwrap()
    }

    async fn edit(&mut self, id: &str, col: &str, v: Value) {
        let pk = Fields(vec![("id".into(), Value::from(id))]);
        let set = Fields(vec![(col.to_owned(), v)]);
        self.engine.replica_mut().update("jobs", &pk, &set).unwrap();
        self.event(Event::LocalWrite).await;
    }
}

fn live(e: &SyncEngine) -> bool {
    e.status().unwrap().phase == Phase::Live
}

fn settled(e: &SyncEngine) -> bool {
    let s = e.status().unwrap();
    s.phase == Phase::Live && s.pending == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_sync_live_offline_and_through_a_restart() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_path, b_path) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let mut a = Shell::open(&a_path, &server.url(), token("alice", "company-a", "admin")).await;
    let mut b = Shell::open(&b_path, &server.url(), token("amy", "company-a", "admin")).await;
    a.until("a's snapshot", live).await;
    b.until("b's snapshot", live).await;
    assert_eq!(b.value("job-a1", "title"), Value::from("Fix boiler"));

    // Live: a's edit reaches b's projection.
    a.edit("job-a1", "status", "scheduled".into()).await;
    b.until("a's edit", |e| {
        let pk = Fields(vec![("id".into(), Value::from("job-a1"))]);
        e.replica().row("jobs", &pk).unwrap().unwrap().get("status") == Some(&Value::from("scheduled"))
    })
    .await;
    assert!(b.changed.contains(&"jobs".to_owned()));
    a.until("a's ack", settled).await;

    // Offline: b edits notes and the price while away; a edits the status and the price.
    b.go_offline().await;
    b.edit("job-a1", "notes", "gate code 1234".into()).await;
    b.edit("job-a1", "price_cents", 15000i64.into()).await;
    a.edit("job-a1", "status", "in_progress".into()).await;
    a.edit("job-a1", "price_cents", 12000i64.into()).await;
    a.until("a's acks", settled).await;
    assert_eq!(b.engine.status().unwrap().pending, 2);

    // b's app is killed and started again from its file, then reconnects.
    drop(b);
    let mut b = Shell::open(&b_path, &server.url(), token("amy", "company-a", "admin")).await;
    assert_eq!(b.engine.status().unwrap().pending, 2, "the offline queue survived the restart");
    b.until("b's replay", settled).await;
    assert_eq!(b.conflicts, 1, "the price was changed on both sides");
    let conflict = &b.engine.replica().conflicts().unwrap()[0];
    assert_eq!(conflict.conflict.columns[0].column, "price_cents");

    // Keep mine: an ordinary write, sent like any other.
    b.engine.replica_mut().resolve(conflict.id, Resolution::KeepMine).unwrap();
    b.event(Event::LocalWrite).await;
    b.until("the resolution's ack", settled).await;
    a.until("b's writes", |e| {
        let pk = Fields(vec![("id".into(), Value::from("job-a1"))]);
        let row = e.replica().row("jobs", &pk).unwrap().unwrap();
        row.get("price_cents") == Some(&Value::Integer(15000))
            && row.get("notes") == Some(&Value::from("gate code 1234"))
    })
    .await;
    for s in [&a, &b] {
        assert_eq!(s.value("job-a1", "status"), Value::from("in_progress"));
        assert_eq!(s.value("job-a1", "notes"), Value::from("gate code 1234"));
        assert_eq!(s.value("job-a1", "price_cents"), Value::Integer(15000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_revokes_the_old_channel_on_the_device() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tom.db");
    let mut tom = Shell::open(&path, &server.url(), token("tom", "company-a", "admin")).await;
    tom.until("snapshot", live).await;
    assert_eq!(tom.value("job-a1", "internal_notes"), Value::from("thin margin"));
    drop(tom);

    let mut tom = Shell::open(&path, &server.url(), token("tom", "company-a", "technician")).await;
    tom.until("the technician's snapshot", |e| {
        e.status().unwrap().phase == Phase::Live
            && e.replica().cursors().unwrap().iter().any(|(c, _)| c == "company-a/technician")
    })
    .await;
    let cursors = tom.engine.replica().cursors().unwrap();
    assert_eq!(cursors.len(), 1, "{cursors:?}");
    assert_eq!(tom.value("job-a1", "internal_notes"), Value::Null, "the admin-only column left the device");
    assert_eq!(tom.value("job-a1", "title"), Value::from("Fix boiler"));
}
