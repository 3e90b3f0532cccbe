//! Names of tasks and objects, kept as given and rendered only when a trace
//! or a report shows them: a bulk run formats none of the names its model
//! gives (subchannel mutexes, per-child timers), most of which nobody reads.

use std::fmt;
use std::rc::Rc;

/// The name of a task or an object. Make one from a string literal, an owned
/// string, or [`Name::lazy`] for a name that is formatted from values.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Rc<str>),
    Lazy(Rc<dyn Fn() -> String>),
    /// `parts[0]`, the number, `parts[1]`: no allocation to make one.
    Indexed(&'static [&'static str; 2], u64),
}

impl Name {
    /// A name formatted by `f` when it is shown, e.g.
    /// `Name::lazy(move || format!("{id}.mu"))`.
    pub fn lazy(f: impl Fn() -> String + 'static) -> Self {
        Name(Repr::Lazy(Rc::new(f)))
    }

    /// The name `{parts[0]}{n}{parts[1]}`, formatted when it is shown, e.g.
    /// `Name::indexed(&["sc", ".mu"], 7)` for `sc7.mu`. Unlike
    /// [`Name::lazy`] it allocates nothing.
    pub fn indexed(parts: &'static [&'static str; 2], n: u64) -> Self {
        Name(Repr::Indexed(parts, n))
    }

    /// The name as text.
    pub fn render(&self) -> Rc<str> {
        match &self.0 {
            Repr::Static(s) => Rc::from(*s),
            Repr::Shared(s) => s.clone(),
            Repr::Lazy(f) => Rc::from(f()),
            Repr::Indexed(..) => Rc::from(self.to_string()),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Static(s) => f.write_str(s),
            Repr::Shared(s) => f.write_str(s),
            Repr::Lazy(g) => f.write_str(&g()),
            Repr::Indexed([before, after], n) => write!(f, "{before}{n}{after}"),
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Name(Repr::Static(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Repr::Shared(Rc::from(s)))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(Repr::Shared(Rc::from(s.as_str())))
    }
}

impl From<Rc<str>> for Name {
    fn from(s: Rc<str>) -> Self {
        Name(Repr::Shared(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_lazy_name_is_formatted_only_when_shown() {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        let name = Name::lazy(move || {
            c.set(c.get() + 1);
            format!("sc{}.mu", 7)
        });
        let copy = name.clone();
        assert_eq!(calls.get(), 0);
        assert_eq!(&*copy.render(), "sc7.mu");
        assert_eq!(name.to_string(), "sc7.mu");
        assert_eq!(calls.get(), 2);
        assert_eq!(&*Name::from("main").render(), "main");
        assert_eq!(Name::from(String::from("x")).to_string(), "x");
        let indexed = Name::indexed(&["transport.reader[sc", "]"], 12);
        assert_eq!(&*indexed.render(), "transport.reader[sc12]");
        assert_eq!(format!("{indexed:?}"), "\"transport.reader[sc12]\"");
    }
}
