//! The JSONL trace of one seed: every event with its simulated timestamp.
//! Same seed, same bytes: events carry only simulated time and values
//! derived from the seed.

use serde_json::{Map, Value};

#[derive(Default, Debug, Clone)]
pub struct Trace {
    lines: Vec<String>,
    /// Set for runs whose trace nobody reads: events are dropped unformatted.
    off: bool,
}

impl Trace {
    /// A trace that records nothing (the invariants never read the trace;
    /// formatting every event as JSON was a tenth of a seed's time).
    pub fn off() -> Self {
        Self {
            lines: Vec::new(),
            off: true,
        }
    }

    /// Whether events are recorded (callers may skip building their fields).
    pub fn is_on(&self) -> bool {
        !self.off
    }

    /// Records `kind` with `fields` (an object) at `t_us`.
    pub fn push(&mut self, t_us: u64, kind: &str, fields: Value) {
        if self.off {
            return;
        }
        let mut obj = Map::new();
        obj.insert("t_us".into(), Value::from(t_us));
        obj.insert("ev".into(), Value::from(kind));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        self.lines.push(Value::Object(obj).to_string());
    }

    /// Records a typed event of the log at `t_us`.
    pub fn push_event(&mut self, t_us: u64, ev: &crate::events::Event) {
        if self.off {
            return;
        }
        let mut obj = Map::new();
        obj.insert("t_us".into(), Value::from(t_us));
        if let Ok(Value::Object(f)) = serde_json::to_value(ev) {
            obj.extend(f);
        }
        self.lines.push(Value::Object(obj).to_string());
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The whole trace, one JSON object per line.
    pub fn to_jsonl(&self) -> String {
        let mut s = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}
