//! The summary `rollcall demo` prints: every number of the story, as an
//! official reads it.

use std::fmt;

use super::DemoSummary;
use crate::cli::sim::thousands;

/// The last `n` segments of an area path.
fn tail(area: &str, n: usize) -> String {
    let segs: Vec<&str> = area.split('/').collect();
    segs[segs.len().saturating_sub(n)..].join("/")
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `HH:MM` of an RFC 3339 time.
fn hhmm(t: &str) -> &str {
    t.get(11..16).unwrap_or(t)
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(f)?;
        writeln!(f, "══ {} — round {} ══", self.round_name, self.round_id)?;
        writeln!(
            f,
            "window {} → {}, closed by the server at {}",
            self.opens_at, self.deadline, self.closed_at
        )?;
        writeln!(
            f,
            "{} residents, {} heads, {} sampling sites; {} exemptions granted before the deadline",
            thousands(self.residents),
            thousands(self.heads),
            self.sites,
            self.exemptions
        )?;
        let o = &self.on_time;
        writeln!(
            f,
            "scanners: {} records in {} uploads ({} resent after a lost answer): {} accepted, {} duplicates, \
             {} bad scans rejected {:?}, {} visitors not in the register",
            thousands(o.items),
            thousands(o.requests),
            o.resent,
            thousands(o.accepted),
            thousands(o.duplicates),
            o.rejected_total(),
            o.rejected,
            o.unregistered
        )?;
        for s in &self.offline {
            writeln!(
                f,
                "  {} offline {}–{}, synced {} records after the close",
                s.site,
                hhmm(&s.from),
                hhmm(&s.until),
                thousands(s.records)
            )?;
        }
        writeln!(
            f,
            "close: {} codes flipped to yellow (missed_round) — {:.1}% of {} in scope were missing",
            thousands(self.flipped),
            pct(self.at_close.missing, self.at_close.in_scope),
            thousands(self.at_close.in_scope)
        )?;
        writeln!(
            f,
            "lab: {} tubes reported, 1 positive pool {} ({} people now yellow pool_positive); \
             {} results waited for records from offline sites",
            thousands(self.lab.tubes),
            self.lab.positive_tube,
            self.lab.positive_members,
            thousands(self.lab.unmatched)
        )?;
        writeln!(
            f,
            "after the close: {} late records synced ({} duplicates from a resent batch), {} make-up samples",
            thousands(self.late_sync.accepted),
            thousands(self.late_sync.duplicates),
            thousands(self.make_ups.accepted)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "round now: in scope {} · sampled {} ({:.1}%, {} late) · made up {} · exempt {} · missing {} ({:.1}%)",
            thousands(c.in_scope),
            thousands(c.sampled),
            pct(c.sampled, c.in_scope),
            thousands(c.late),
            thousands(c.made_up),
            thousands(c.exempt),
            thousands(c.missing),
            pct(c.missing, c.in_scope)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "coverage by community              in scope   sampled   late  made up  exempt  missing   sampled%"
        )?;
        for a in &self.communities {
            let k = &a.counts;
            writeln!(
                f,
                "  {:<30}{:>10}{:>10}{:>7}{:>9}{:>8}{:>9}{:>10.1}%",
                tail(&a.area, 1),
                thousands(k.in_scope),
                thousands(k.sampled),
                thousands(k.late),
                thousands(k.made_up),
                thousands(k.exempt),
                thousands(k.missing),
                pct(k.sampled, k.in_scope)
            )?;
        }
        writeln!(f)?;
        writeln!(f, "longest missing lists (grid: missing of in scope)")?;
        for g in &self.top_grids {
            writeln!(
                f,
                "  {:<36}{:>6} of {}",
                tail(&g.area, 2),
                thousands(g.counts.missing),
                thousands(g.counts.in_scope)
            )?;
        }
        if let Some(g) = self.top_grids.first() {
            writeln!(
                f,
                "first of the {} on {}'s list:",
                self.top_list_total,
                tail(&g.area, 2)
            )?;
            for p in &self.top_list {
                writeln!(
                    f,
                    "  {}  {}  {}  → {}",
                    p.person_id, p.name, p.household, p.head
                )?;
            }
        }
        writeln!(f)?;
        let peak = self.progress.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let bars: String = self
            .progress
            .iter()
            .map(|p| ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'][((p.1 * 7) / peak) as usize])
            .collect();
        writeln!(
            f,
            "sampled by hour {} → {}: {bars} (peak {}/h)",
            self.progress.first().map_or("", |p| hhmm(&p.0)),
            self.progress.last().map_or("", |p| hhmm(&p.0)),
            thousands(peak)
        )?;
        writeln!(f, "gates see:")?;
        for g in &self.gates {
            writeln!(
                f,
                "  {}  {:<7} {:<22} ({})",
                g.person_id,
                g.color,
                g.reasons.join(","),
                g.who
            )?;
        }
        writeln!(f)?;
        let n = &self.next;
        writeln!(
            f,
            "══ the next day: {} — round {} ══",
            n.round_name, n.round_id
        )?;
        writeln!(
            f,
            "{} records accepted; closed by the official: sampled {} ({:.1}%), exempt {}, missing {}",
            thousands(n.sent),
            thousands(n.counts.sampled),
            pct(n.counts.sampled, n.counts.in_scope),
            thousands(n.counts.exempt),
            thousands(n.counts.missing)
        )?;
        writeln!(
            f,
            "repeat missers (still flagged in both rounds, GET /v1/repeat-missing?last=2&min=2): {}",
            thousands(n.repeat_missers)
        )?;
        writeln!(
            f,
            "door-knock messages for the longest grid's heads: {}; the first:",
            n.messages
        )?;
        for line in n.first_message.lines() {
            writeln!(f, "  │ {line}")?;
        }
        writeln!(f)?;
        match (self.matches_plan(), self.expected) {
            (Some(true), _) => writeln!(
                f,
                "check: the server's counts are exactly what the simulator sent ✓"
            )?,
            (Some(false), Some(e)) => writeln!(
                f,
                "check: MISMATCH — the simulator expected sampled {} late {} made up {} exempt {} missing {}",
                e.sampled, e.late, e.made_up, e.exempt, e.missing
            )?,
            _ => writeln!(f, "check: skipped (the data directory held earlier rounds)")?,
        }
        if self.on_time.overran > 0 {
            writeln!(
                f,
                "note: {} on-time records were answered after the deadline and count as late (a slow machine)",
                thousands(self.on_time.overran)
            )?;
        }
        writeln!(f, "took {:.1} s", self.seconds)?;
        writeln!(f)?;
        writeln!(f, "dashboard:      {}/", self.url)?;
        writeln!(f, "admin token:    {}", self.admin_token)?;
        write!(
            f,
            "official token: {} ({})",
            self.official_token, self.subdistrict
        )?;
        if !self.temporary {
            write!(f, "\ndata kept in {}", self.data_dir.display())?;
        }
        Ok(())
    }
}
