//! The resident register and the area tree.
//!
//! Every person the engine has heard of (registered or only seen in a record)
//! has a stable *slot* (`u32`). Registered residents also have a *row*; rows
//! are kept in tree order (area by whole segments, then household, name, ID),
//! so every area node covers one contiguous range of rows — a scope is a few
//! ranges, coverage is a scan of a range. Rows are never removed: a resident
//! who moves out keeps their row, marked inactive, so closed rounds still know
//! where they lived.

use rayon::prelude::*;

use super::index::{Index, Strings, str_hash};

use crate::domain::register::{HeadRow, RegisterRow};
use crate::domain::{AreaPath, PersonId};

pub type Slot = u32;
pub const NONE: u32 = u32::MAX;

/// A responsible head of one area node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    pub title: String,
    pub name: String,
    pub phone: String,
}

/// One node of the area tree.
#[derive(Clone, Debug)]
pub struct Node {
    pub path: AreaPath,
    pub parent: u32,
    pub children: Vec<u32>,
    pub depth: u32,
    /// Boxed: most nodes have no head, and a node is kept per ten residents.
    pub head: Option<Box<Head>>,
    /// Rows of the subtree: `[start, end)`; the node's own rows: `[start, own_end)`.
    pub start: u32,
    pub own_end: u32,
    pub end: u32,
    /// Place in the tree's depth-first order and the size of the subtree
    /// (itself included): the subtree is the `size` nodes from `rank` on.
    pub rank: u32,
    pub size: u32,
}

/// A registered resident. Strings live in the register's arena.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub slot: Slot,
    pub node: u32,
    pub household: u32,
    /// Where the name starts in the arena; the phone follows it.
    text_off: u32,
    /// `u16`: 64 characters of up to 4 bytes each do not fit in a `u8`.
    name_len: u16,
    phone_len: u8,
    pub active: bool,
}

impl Row {
    fn phone_off(&self) -> u32 {
        self.text_off + u32::from(self.name_len)
    }
}

/// The details of one resident, borrowed from the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentRef<'a> {
    pub person_id: PersonId,
    pub name: &'a str,
    pub phone: &'a str,
    pub area: &'a AreaPath,
    pub household: &'a str,
    pub active: bool,
    pub node: u32,
}

/// One register row as the register reads it: borrowed from a
/// [`RegisterRow`] or from [`PackedRows`].
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub person_id: PersonId,
    pub area: &'a AreaPath,
    pub household: &'a str,
    pub name: &'a str,
    pub phone: &'a str,
}

impl<'a> From<&'a RegisterRow> for RowView<'a> {
    fn from(r: &'a RegisterRow) -> Self {
        RowView {
            person_id: r.person_id,
            area: &r.area,
            household: &r.household,
            name: &r.name,
            phone: &r.phone,
        }
    }
}

/// Register rows in a few flat buffers instead of three strings each: how a
/// replay carries millions of rows from the decoder to the engine without
/// thirty million allocations (and as many frees).
#[derive(Clone, Debug, Default)]
pub struct PackedRows {
    ids: Vec<PersonId>,
    /// Consecutive rows in one area share an entry.
    areas: Vec<AreaPath>,
    area_of: Vec<u32>,
    text: String,
    /// Where each row's household, name and phone end in `text`.
    ends: Vec<[u32; 3]>,
}

impl PackedRows {
    /// Appends a row; `area` is parsed only when it differs from the last
    /// row's (an error is the parser's).
    pub fn push(
        &mut self,
        person_id: PersonId,
        area: &str,
        household: &str,
        name: &str,
        phone: &str,
    ) -> Result<(), crate::domain::AreaPathError> {
        if self.areas.last().is_none_or(|a| a.as_str() != area) {
            self.areas.push(AreaPath::parse(area)?);
        }
        self.ids.push(person_id);
        self.area_of.push(self.areas.len() as u32 - 1);
        let mut end = |s: &str| {
            self.text.push_str(s);
            self.text.len() as u32
        };
        let ends = [end(household), end(name), end(phone)];
        self.ends.push(ends);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Empties the buffers but keeps their memory, for the next rows.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.areas.clear();
        self.area_of.clear();
        self.text.clear();
        self.ends.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = RowView<'_>> + Clone {
        self.ids.iter().enumerate().map(|(i, &person_id)| {
            let start = if i == 0 { 0 } else { self.ends[i - 1][2] } as usize;
            let [h, n, p] = self.ends[i].map(|e| e as usize);
            RowView {
                person_id,
                area: &self.areas[self.area_of[i] as usize],
                household: &self.text[start..h],
                name: &self.text[h..n],
                phone: &self.text[n..p],
            }
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct Register {
    ids: Vec<PersonId>,
    /// Slots by person ID (the IDs are `ids`).
    slot_of: Index,
    row_of: Vec<u32>,
    rows: Vec<Row>,
    arena: String,
    households: Strings,
    household_ix: Index,
    nodes: Vec<Node>,
    /// By rank (place in depth-first order): where the node's own rows end. Rows are sorted by node rank,
    /// so the own rows of rank `r` are `own_ends[r - 1]..own_ends[r]`: a
    /// scan over a subtree reads this instead of a node each.
    own_ends: Vec<u32>,
    node_ix: Index,
    active: u64,
    heads: u64,
}

/// How an import compares with the register: `(inserted, updated, unchanged)`.
pub type Diff = (u64, u64, u64);

impl Register {
    /// The slot of a person, if the engine has heard of them.
    pub fn slot(&self, id: PersonId) -> Option<Slot> {
        let ids = &self.ids;
        self.slot_of.get(id.as_u64(), |s| ids[s as usize] == id)
    }

    /// The slots of many people, in a loop that does nothing else (so
    /// their cache misses overlap).
    pub fn slots_of(&self, people: &[PersonId]) -> Vec<Option<Slot>> {
        people.iter().map(|&p| self.slot(p)).collect()
    }

    /// The slot of a person, creating one for a newcomer.
    pub fn intern(&mut self, id: PersonId) -> Slot {
        if let Some(s) = self.slot(id) {
            return s;
        }
        let s = self.ids.len() as Slot;
        self.ids.push(id);
        self.row_of.push(NONE);
        let ids = &self.ids;
        self.slot_of
            .insert(id.as_u64(), s, |s| ids[s as usize].as_u64());
        s
    }

    pub fn person_id(&self, slot: Slot) -> PersonId {
        self.ids[slot as usize]
    }

    /// Number of slots (everyone ever seen).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// Registered residents now (moved-out people excluded).
    pub fn active_count(&self) -> u64 {
        self.active
    }

    pub fn heads_count(&self) -> u64 {
        self.heads
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// `own_ends` of node `n`'s subtree (the `size` nodes from its rank on,
    /// in depth-first order), with the row its first own row is at: the own
    /// rows of the subtree's `i`th node are `ends[i - 1]..ends[i]`
    /// (`first..ends[0]` for `n` itself).
    pub fn subtree_row_ends(&self, n: u32) -> (u32, &[u32]) {
        let node = &self.nodes[n as usize];
        let ends = &self.own_ends[node.rank as usize..(node.rank + node.size) as usize];
        (node.start, ends)
    }

    pub fn node(&self, path: &AreaPath) -> Option<u32> {
        let nodes = &self.nodes;
        let path = path.as_str();
        self.node_ix
            .get(str_hash(path), |n| nodes[n as usize].path.as_str() == path)
    }

    /// The row of a slot, if they are (or were) registered.
    pub fn row_of(&self, slot: Slot) -> Option<u32> {
        match self.row_of.get(slot as usize) {
            Some(&r) if r != NONE => Some(r),
            _ => None,
        }
    }

    /// Whether the slot is a registered resident now.
    pub fn is_active(&self, slot: Slot) -> bool {
        self.row_of(slot)
            .is_some_and(|r| self.rows[r as usize].active)
    }

    /// An area "exists in the register" when some resident (now or formerly)
    /// lives at or under it.
    pub fn area_exists(&self, path: &AreaPath) -> bool {
        self.node(path)
            .is_some_and(|n| self.nodes[n as usize].end > self.nodes[n as usize].start)
    }

    /// Whether node `n` is `ancestor` or lies under it.
    pub fn is_under(&self, mut n: u32, ancestor: u32) -> bool {
        let target = self.nodes[ancestor as usize].depth;
        while self.nodes[n as usize].depth > target {
            n = self.nodes[n as usize].parent;
        }
        n == ancestor
    }

    pub fn resident(&self, row: u32) -> ResidentRef<'_> {
        let r = &self.rows[row as usize];
        ResidentRef {
            person_id: self.ids[r.slot as usize],
            name: self.name_of(r),
            phone: self.phone_of(r),
            area: &self.nodes[r.node as usize].path,
            household: self.households.get(r.household),
            active: r.active,
            node: r.node,
        }
    }

    pub fn household(&self, ix: u32) -> &str {
        self.households.get(ix)
    }

    pub fn name_of(&self, row: &Row) -> &str {
        self.str_at(row.text_off, row.name_len.into())
    }

    fn phone_of(&self, row: &Row) -> &str {
        self.str_at(row.phone_off(), row.phone_len.into())
    }

    fn str_at(&self, off: u32, len: usize) -> &str {
        &self.arena[off as usize..off as usize + len]
    }

    /// The head of node `n`, or failing that the nearest one above, with the
    /// node it belongs to.
    pub fn nearest_head(&self, mut n: u32) -> Option<(u32, &Head)> {
        loop {
            let node = &self.nodes[n as usize];
            if let Some(h) = &node.head {
                return Some((n, &**h));
            }
            if node.parent == NONE {
                return None;
            }
            n = node.parent;
        }
    }

    /// Compares rows with the register without changing it.
    pub fn diff_register(&self, rows: &[RegisterRow]) -> Diff {
        let (mut ins, mut upd, mut unch) = (0, 0, 0);
        for r in rows {
            match self.slot(r.person_id).and_then(|s| self.row_of(s)) {
                Some(ix) if self.rows[ix as usize].active => {
                    let cur = self.resident(ix);
                    if cur.name == r.name
                        && cur.phone == r.phone
                        && *cur.area == r.area
                        && cur.household == r.household
                    {
                        unch += 1;
                    } else {
                        upd += 1;
                    }
                }
                _ => ins += 1,
            }
        }
        (ins, upd, unch)
    }

    /// Upserts register rows by person ID, then restores tree order.
    pub fn upsert(&mut self, rows: &[RegisterRow]) {
        if self.ids.is_empty() {
            // The first import: size the index once instead of rehashing it
            // on the way.
            self.reserve(rows.len());
        }
        self.upsert_unordered(rows.iter().map(RowView::from));
        self.reorder();
    }

    /// Room for `n` more people without regrowing the index.
    pub fn reserve(&mut self, n: usize) {
        let ids = &self.ids;
        self.slot_of.reserve(n, |s| ids[s as usize].as_u64());
        self.ids.reserve(n);
        self.row_of.reserve(n);
        self.rows.reserve(n);
    }

    /// Upserts rows but leaves tree order (and every range that depends on
    /// it) stale until [`Register::reorder`]: for a replay, which feeds a
    /// long run of imports in parts and orders once at the end.
    pub(crate) fn upsert_unordered<'a>(&mut self, rows: impl Iterator<Item = RowView<'a>> + Clone) {
        // Every person's slot first, in a tight loop: the ID index is far
        // bigger than the caches, and independent lookups overlap their
        // misses, where one per row among the row's other work does not.
        let slots: Vec<Slot> = rows.clone().map(|r| self.intern(r.person_id)).collect();
        // Imports list an area's people together: a run of rows in one
        // area finds its node once.
        let mut last: Option<(&AreaPath, u32)> = None;
        for (r, slot) in rows.zip(slots) {
            let node = match last {
                Some((a, n)) if std::ptr::eq(a, r.area) || a == r.area => n,
                _ => {
                    let n = self.intern_node(r.area);
                    last = Some((r.area, n));
                    n
                }
            };
            let household = self.intern_household(r.household);
            // An unchanged name and phone keep their place in the arena, so
            // re-importing the same register does not grow it.
            let old = self.row_of(slot).map(|ix| self.rows[ix as usize]);
            let (text_off, name_len, phone_len) = match old {
                Some(o) if self.name_of(&o) == r.name && self.phone_of(&o) == r.phone => {
                    (o.text_off, o.name_len, o.phone_len)
                }
                _ => {
                    let (off, name_len) = self.push_str(r.name, u16::MAX.into());
                    let (_, phone_len) = self.push_str(r.phone, u8::MAX.into());
                    (off, name_len as u16, phone_len as u8)
                }
            };
            let row = Row {
                slot,
                node,
                household,
                text_off,
                name_len,
                phone_len,
                active: true,
            };
            match self.row_of(slot) {
                Some(ix) => {
                    let old = &mut self.rows[ix as usize];
                    if !old.active {
                        self.active += 1;
                    }
                    *old = row;
                }
                None => {
                    self.row_of[slot as usize] = self.rows.len() as u32;
                    self.rows.push(row);
                    self.active += 1;
                }
            }
        }
    }

    /// Marks a resident as moved out. Returns false when they are not registered.
    pub fn deactivate(&mut self, id: PersonId) -> bool {
        let Some(ix) = self.slot(id).and_then(|s| self.row_of(s)) else {
            return false;
        };
        let row = &mut self.rows[ix as usize];
        if !row.active {
            return false;
        }
        row.active = false;
        self.active -= 1;
        true
    }

    pub fn diff_heads(&self, heads: &[HeadRow]) -> Diff {
        let (mut ins, mut upd, mut unch) = (0, 0, 0);
        for h in heads {
            match self
                .node(&h.area)
                .and_then(|n| self.nodes[n as usize].head.as_ref())
            {
                None => ins += 1,
                Some(cur) if cur.title == h.title && cur.name == h.name && cur.phone == h.phone => {
                    unch += 1;
                }
                Some(_) => upd += 1,
            }
        }
        (ins, upd, unch)
    }

    pub fn set_heads(&mut self, heads: &[HeadRow]) {
        let had_new_nodes = heads.iter().any(|h| self.node(&h.area).is_none());
        for h in heads {
            let n = self.intern_node(&h.area);
            let slot = &mut self.nodes[n as usize].head;
            if slot.is_none() {
                self.heads += 1;
            }
            *slot = Some(Box::new(Head {
                title: h.title.clone(),
                name: h.name.clone(),
                phone: h.phone.clone(),
            }));
        }
        if had_new_nodes {
            self.reorder();
        }
    }

    fn push_str(&mut self, s: &str, max: usize) -> (u32, usize) {
        // Names and phones are short (the parser bounds them); longer strings
        // are cut at a character boundary rather than corrupting the arena.
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let off = self.arena.len() as u32;
        self.arena.push_str(&s[..end]);
        (off, end)
    }

    fn intern_household(&mut self, h: &str) -> u32 {
        let households = &self.households;
        let hash = str_hash(h);
        if let Some(ix) = self.household_ix.get(hash, |i| households.get(i) == h) {
            return ix;
        }
        let ix = self.households.push(h);
        let households = &self.households;
        self.household_ix
            .insert(hash, ix, |i| str_hash(households.get(i)));
        ix
    }

    fn intern_node(&mut self, path: &AreaPath) -> u32 {
        if let Some(n) = self.node(path) {
            return n;
        }
        let parent = path.parent().map_or(NONE, |p| self.intern_node(&p));
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            path: path.clone(),
            parent,
            children: Vec::new(),
            depth: path.depth() as u32,
            head: None,
            start: 0,
            own_end: 0,
            end: 0,
            rank: 0,
            size: 1,
        });
        if parent != NONE {
            self.nodes[parent as usize].children.push(n);
        }
        let nodes = &self.nodes;
        self.node_ix.insert(str_hash(path.as_str()), n, |i| {
            str_hash(nodes[i as usize].path.as_str())
        });
        n
    }

    /// Restores tree order after rows or nodes changed: nodes ranked depth
    /// first with children by segment, rows sorted by (node rank, household,
    /// name, ID), then every node's range recomputed.
    pub(crate) fn reorder(&mut self) {
        let mut rank = vec![0u32; self.nodes.len()];
        let mut order = Vec::with_capacity(self.nodes.len());
        {
            let nodes = &mut self.nodes;
            let mut roots: Vec<u32> = (0..nodes.len() as u32)
                .filter(|&n| nodes[n as usize].parent == NONE)
                .collect();
            let last_segment = |nodes: &Vec<Node>, n: u32| -> String {
                nodes[n as usize]
                    .path
                    .segments()
                    .last()
                    .unwrap_or_default()
                    .to_owned()
            };
            roots.sort_by_cached_key(|&n| last_segment(nodes, n));
            for i in 0..nodes.len() {
                let mut kids = std::mem::take(&mut nodes[i].children);
                kids.sort_by_cached_key(|&n| last_segment(nodes, n));
                nodes[i].children = kids;
            }
            let mut stack: Vec<u32> = roots.into_iter().rev().collect();
            while let Some(n) = stack.pop() {
                rank[n as usize] = order.len() as u32;
                order.push(n);
                stack.extend(nodes[n as usize].children.iter().rev());
            }
        }
        let arena = &self.arena;
        let households = &self.households;
        let ids = &self.ids;
        let name =
            |r: &Row| &arena[r.text_off as usize..r.text_off as usize + usize::from(r.name_len)];
        // By node rank first (an integer key), then each node's own rows by
        // household, name and ID: string comparisons stay inside a node's
        // run of about ten rows instead of every merge of a city-wide sort.
        // IDs are unique, so the order is total and the sort need not be stable.
        self.rows
            .par_sort_unstable_by_key(|r| rank[r.node as usize]);
        self.rows
            .par_chunk_by_mut(|a, b| a.node == b.node)
            .for_each(|run| {
                run.sort_unstable_by(|a, b| {
                    households
                        .get(a.household)
                        .cmp(households.get(b.household))
                        .then_with(|| name(a).cmp(name(b)))
                        .then_with(|| ids[a.slot as usize].cmp(&ids[b.slot as usize]))
                });
            });
        for (i, r) in self.rows.iter().enumerate() {
            self.row_of[r.slot as usize] = i as u32;
        }
        // Ranges: own rows are contiguous per node; subtree ranges close in
        // reverse depth-first order (children before parents).
        for n in &mut self.nodes {
            n.start = u32::MAX;
            n.own_end = 0;
        }
        let mut i = 0;
        while i < self.rows.len() {
            let node = self.rows[i].node;
            let mut j = i;
            while j < self.rows.len() && self.rows[j].node == node {
                j += 1;
            }
            let n = &mut self.nodes[node as usize];
            n.start = i as u32;
            n.own_end = j as u32;
            i = j;
        }
        // A node without own rows starts where its subtree starts: at the
        // first row after every node ranked before it.
        let mut next = 0u32;
        for &n in &order {
            let node = &mut self.nodes[n as usize];
            if node.start == u32::MAX {
                node.start = next;
                node.own_end = next;
            }
            next = node.own_end;
        }
        for &n in order.iter().rev() {
            let end = self.nodes[n as usize]
                .children
                .iter()
                .map(|&c| self.nodes[c as usize].end)
                .max()
                .unwrap_or(0)
                .max(self.nodes[n as usize].own_end);
            self.nodes[n as usize].end = end;
        }
        for (i, &n) in order.iter().enumerate() {
            self.nodes[n as usize].rank = i as u32;
            self.nodes[n as usize].size = 1;
        }
        for &n in order.iter().rev() {
            let parent = self.nodes[n as usize].parent;
            if parent != NONE {
                self.nodes[parent as usize].size += self.nodes[n as usize].size;
            }
        }
        self.own_ends = order
            .iter()
            .map(|&n| self.nodes[n as usize].own_end)
            .collect();
    }
}

impl Register {
    /// Heap bytes each structure of the register has reserved (capacities,
    /// not lengths; allocator overhead not included except where noted), for
    /// the memory benchmark's breakdown.
    pub fn footprint(&self) -> Vec<(&'static str, usize)> {
        use std::mem::size_of;
        let nodes = self.nodes.capacity() * size_of::<Node>()
            + self
                .nodes
                .iter()
                .map(|n| n.path.as_str().len() + n.children.capacity() * 4)
                .sum::<usize>();
        vec![
            ("ids", self.ids.capacity() * size_of::<PersonId>()),
            ("slot_of", self.slot_of.bytes()),
            ("row_of", self.row_of.capacity() * 4),
            ("rows", self.rows.capacity() * size_of::<Row>()),
            ("arena", self.arena.capacity()),
            ("households", self.households.bytes()),
            ("household_ix", self.household_ix.bytes()),
            ("nodes", nodes),
            ("node_ix", self.node_ix.bytes()),
            ("own_ends", self.own_ends.capacity() * 4),
        ]
    }
}

impl Register {
    /// The register as snapshot bytes: people by slot, nodes by index (with
    /// their heads), households, the string arena and the rows in order.
    pub(super) fn encode(&self, e: &mut super::snapshot::Enc) {
        e.len(self.ids.len());
        for id in &self.ids {
            e.u64(id.as_u64());
        }
        e.len(self.nodes.len());
        for n in &self.nodes {
            e.str(n.path.as_str());
            match &n.head {
                Some(h) => {
                    e.bool(true);
                    e.str(&h.title);
                    e.str(&h.name);
                    e.str(&h.phone);
                }
                None => e.bool(false),
            }
        }
        e.len(self.households.len());
        for h in self.households.iter() {
            e.str(h);
        }
        e.str(&self.arena);
        e.len(self.rows.len());
        for r in &self.rows {
            e.u32(r.slot);
            e.u32(r.node);
            e.u32(r.household);
            e.u32(r.text_off);
            e.u32(r.phone_off());
            e.u16(r.name_len);
            e.u8(r.phone_len);
            e.bool(r.active);
        }
    }

    /// The register [`Register::encode`] wrote: the same slots, node
    /// indices and rows, tree order restored.
    pub(super) fn decode(d: &mut super::snapshot::Dec<'_>) -> Result<Register, String> {
        let mut reg = Register::default();
        let n = d.len(8)?;
        reg.reserve(n);
        for _ in 0..n {
            let id = d.person()?;
            if reg.intern(id) as usize != reg.ids.len() - 1 {
                return Err(format!("{id} is in the register twice"));
            }
        }
        for i in 0..d.len(9)? {
            let path = d.area()?;
            if reg.intern_node(&path) as usize != i {
                return Err(format!("area node {path} out of order"));
            }
            if d.bool()? {
                let head = Head {
                    title: d.str()?.to_owned(),
                    name: d.str()?.to_owned(),
                    phone: d.str()?.to_owned(),
                };
                reg.nodes[i].head = Some(Box::new(head));
                reg.heads += 1;
            }
        }
        for i in 0..d.len(8)? {
            let h = d.str()?;
            if reg.intern_household(h) as usize != i {
                return Err(format!("household {h:?} twice"));
            }
        }
        d.str()?.clone_into(&mut reg.arena);
        let rows = d.len(24)?;
        reg.rows.reserve(rows);
        for _ in 0..rows {
            let mut r = Row {
                slot: d.u32()?,
                node: d.u32()?,
                household: d.u32()?,
                text_off: 0,
                name_len: 0,
                phone_len: 0,
                active: false,
            };
            let (name_off, phone_off) = (d.u32()?, d.u32()?);
            (r.name_len, r.phone_len, r.active) = (d.u16()?, d.u8()?, d.bool()?);
            let at = |off: u32, len: usize| reg.arena.get(off as usize..off as usize + len);
            let (Some(name), Some(phone)) = (
                at(name_off, r.name_len.into()),
                at(phone_off, r.phone_len.into()),
            ) else {
                return Err(format!("register row {} is out of range", reg.rows.len()));
            };
            r.text_off = name_off;
            if phone_off != name_off + u32::from(r.name_len) {
                // A snapshot whose phone does not follow the name (written
                // before they were kept together): both copied to the end.
                let pair = format!("{name}{phone}");
                r.text_off = reg.arena.len() as u32;
                reg.arena.push_str(&pair);
            }
            if r.slot as usize >= reg.ids.len()
                || r.node as usize >= reg.nodes.len()
                || r.household as usize >= reg.households.len()
                || reg.row_of[r.slot as usize] != NONE
            {
                return Err(format!("register row {} is out of range", reg.rows.len()));
            }
            reg.row_of[r.slot as usize] = reg.rows.len() as u32;
            reg.active += u64::from(r.active);
            reg.rows.push(r);
        }
        reg.reorder();
        Ok(reg)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Policy;
    use crate::engine::tests::support::*;

    #[test]
    fn packed_rows_in_parts_build_the_register_an_import_builds() {
        use super::{PackedRows, Register, RowView};
        let rows = vec![
            row(3, "崇文路街道/学院社区/第1网格", "兰居01-101", "王芳"),
            row(1, "崇文路街道/学院社区/第1网格", "兰居01-102", "李雷"),
            row(2, "崇文路街道/枣林社区", "枣林02-301", "张伟"),
            row(4, "崇文路街道/学院社区/第1网格", "", "赵敏"),
        ];
        let mut packed = [PackedRows::default(), PackedRows::default()];
        for (i, r) in rows.iter().enumerate() {
            packed[i / 3]
                .push(
                    r.person_id,
                    r.area.as_str(),
                    &r.household,
                    &r.name,
                    &r.phone,
                )
                .unwrap();
        }
        let views: Vec<String> = packed
            .iter()
            .flat_map(PackedRows::iter)
            .map(|v| format!("{v:?}"))
            .collect();
        let direct: Vec<String> = rows
            .iter()
            .map(|r| format!("{:?}", RowView::from(r)))
            .collect();
        assert_eq!(views, direct);
        assert!(
            packed[0]
                .push(pid(9), "崇文路街道//x", "", "n", "p")
                .is_err()
        );

        let mut whole = Register::default();
        whole.upsert(&rows);
        let mut parts = Register::default();
        parts.upsert_unordered(packed[0].iter().take(3));
        parts.upsert_unordered(packed[1].iter());
        parts.reorder();
        let dump = |r: &Register| {
            (0..r.rows().len() as u32)
                .map(|i| format!("{:?}", r.resident(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(dump(&parts), dump(&whole));
    }

    fn paths(fx: &Fx, rows: std::ops::Range<u32>) -> Vec<String> {
        let reg = fx.engine.register();
        rows.map(|r| reg.resident(r).area.to_string()).collect()
    }

    #[test]
    fn every_area_node_covers_a_contiguous_range_of_rows_in_tree_order() {
        let mut fx = Fx::new(Policy::default());
        let areas = [
            "甲/a-b/1",
            "甲/a/2",
            "甲",
            "乙/x",
            "甲/a",
            "甲/a b",
            "甲/a/1",
            "甲/a/1",
            "乙-丙",
        ];
        let rows = areas
            .iter()
            .enumerate()
            .map(|(i, a)| row(i as u32, a, "1", "王"))
            .collect();
        fx.register(rows, t("2022-04-19T08:00:00+08:00"));
        // A second import moves one resident and adds a node in the middle.
        fx.register(
            vec![row(1, "甲/a/0", "1", "王"), row(20, "甲/a/1/x", "1", "王")],
            t("2022-04-19T09:00:00+08:00"),
        );
        let reg = fx.engine.register();
        for node in reg.nodes() {
            let path = node.path.as_str();
            let all = paths(&fx, 0..reg.rows().len() as u32);
            let under: Vec<usize> = (0..all.len())
                .filter(|&i| all[i] == path || all[i].starts_with(&format!("{path}/")))
                .collect();
            let own: Vec<usize> = (0..all.len()).filter(|&i| all[i] == path).collect();
            assert_eq!(
                under,
                (node.start as usize..node.end as usize).collect::<Vec<_>>(),
                "subtree of {path}"
            );
            assert_eq!(
                own,
                (node.start as usize..node.own_end as usize).collect::<Vec<_>>(),
                "own rows of {path}"
            );
        }
        // Tree order: a node before its children, siblings by segment.
        assert_eq!(
            paths(&fx, 0..reg.rows().len() as u32),
            [
                "乙/x",
                "乙-丙",
                "甲",
                "甲/a",
                "甲/a/0",
                "甲/a/1",
                "甲/a/1",
                "甲/a/1/x",
                "甲/a b",
                "甲/a-b/1"
            ]
        );
    }

    #[test]
    fn an_area_exists_when_someone_lives_at_or_under_it_even_after_moving_out() {
        let mut fx = Fx::new(Policy::default());
        let now = t("2022-04-19T08:00:00+08:00");
        fx.register(vec![row(1, "甲/a/1", "1", "王")], now);
        fx.heads(vec![head("丁/z", "楼长", "李")], now);
        let reg = fx.engine.register();
        assert!(reg.area_exists(&area("甲")) && reg.area_exists(&area("甲/a/1")));
        assert!(!reg.area_exists(&area("甲/a/1/x")) && !reg.area_exists(&area("甲/a/2")));
        assert!(
            !reg.area_exists(&area("丁/z")),
            "a head alone does not make an area exist"
        );
        fx.move_out(1, now);
        assert!(fx.engine.register().area_exists(&area("甲/a")));
    }

    #[test]
    fn the_nearest_head_is_the_nodes_own_or_the_closest_above() {
        let mut fx = Fx::new(Policy::default());
        let now = t("2022-04-19T08:00:00+08:00");
        fx.register(
            vec![
                row(1, "甲/a/1", "1", "王"),
                row(2, "甲/b", "1", "王"),
                row(3, "乙", "1", "王"),
            ],
            now,
        );
        fx.heads(
            vec![head("甲/a/1", "楼层长", "王芳"), head("甲", "街道", "张")],
            now,
        );
        let reg = fx.engine.register();
        let nearest = |p: &str| {
            reg.nearest_head(reg.node(&area(p)).unwrap())
                .map(|(_, h)| h.name.clone())
        };
        assert_eq!(nearest("甲/a/1").as_deref(), Some("王芳"));
        assert_eq!(nearest("甲/b").as_deref(), Some("张"));
        assert_eq!(nearest("乙"), None);
        // A later file replaces a node's head.
        fx.heads(vec![head("甲/a/1", "楼层长", "赵")], now);
        let reg = fx.engine.register();
        assert_eq!(
            reg.nearest_head(reg.node(&area("甲/a/1")).unwrap())
                .unwrap()
                .1
                .name,
            "赵"
        );
        assert_eq!(fx.engine.head_count(), 2);
    }

    #[test]
    fn a_name_of_sixty_four_four_byte_characters_is_kept_whole() {
        // The parser allows 64 characters; some CJK characters take 4 bytes.
        let name: String = std::iter::repeat_n('𠀋', 64).collect();
        let mut fx = Fx::new(Policy::default());
        let now = t("2022-04-19T08:00:00+08:00");
        fx.register(vec![row(1, "甲", "1", &name)], now);
        let reg = fx.engine.register();
        assert_eq!(reg.resident(0).name, name);
        let again = fx.register(vec![row(1, "甲", "1", &name)], now);
        assert_eq!(
            again,
            crate::engine::Prepared::Import {
                total: 1,
                inserted: 0,
                updated: 0,
                unchanged: 1
            }
        );
    }

    #[test]
    fn a_snapshot_whose_phones_do_not_follow_the_names_decodes_to_the_same_residents() {
        use super::super::snapshot::{Dec, Enc};
        // The register's part as the former encoding wrote it: the arena
        // holds every name, then every phone.
        let mut e = Enc::default();
        e.len(2);
        e.u64(pid(1).as_u64());
        e.u64(pid(2).as_u64());
        e.len(1);
        e.str("甲");
        e.bool(false);
        e.len(1);
        e.str("兰居01-101");
        e.str("王芳李雷1390000000113900000002");
        e.len(2);
        for (slot, name_off, name_len, phone_off) in [(0, 0, 6, 12), (1, 6, 6, 23)] {
            e.u32(slot);
            e.u32(0);
            e.u32(0);
            e.u32(name_off);
            e.u32(phone_off);
            e.u16(name_len);
            e.u8(11);
            e.bool(true);
        }
        let reg = super::Register::decode(&mut Dec::new(&e.buf)).unwrap();
        let people: Vec<_> = (0..2)
            .map(|r| {
                let p = reg.resident(r);
                (p.person_id, p.name, p.phone, p.household)
            })
            .collect();
        assert_eq!(
            people,
            [
                (pid(2), "李雷", "13900000002", "兰居01-101"),
                (pid(1), "王芳", "13900000001", "兰居01-101")
            ]
        );
        // Encoded again, it decodes to the same residents.
        let mut again = Enc::default();
        reg.encode(&mut again);
        let back = super::Register::decode(&mut Dec::new(&again.buf)).unwrap();
        assert_eq!(
            (0..2).map(|r| back.resident(r)).collect::<Vec<_>>(),
            (0..2).map(|r| reg.resident(r)).collect::<Vec<_>>()
        );
        // A phone out of the arena is still refused (the last row's phone
        // offset: 8 bytes from the end).
        let mut bad = e.buf.clone();
        let at = bad.len() - 8;
        bad[at..at + 4].copy_from_slice(&900u32.to_le_bytes());
        assert!(super::Register::decode(&mut Dec::new(&bad)).is_err());
    }

    #[test]
    fn a_row_stays_twenty_bytes() {
        assert_eq!(std::mem::size_of::<super::Row>(), 20);
    }

    #[test]
    fn re_importing_the_same_register_does_not_grow_the_arena() {
        let mut fx = Fx::new(Policy::default());
        let now = t("2022-04-19T08:00:00+08:00");
        let rows = || {
            (0..50)
                .map(|n| row(n, "甲/a", "1", "王芳"))
                .collect::<Vec<_>>()
        };
        fx.register(rows(), now);
        let size = fx.engine.register().arena.len();
        fx.register(rows(), now);
        assert_eq!(fx.engine.register().arena.len(), size);
        fx.register(vec![row(3, "甲/a", "1", "王芳芳")], now);
        // A changed name is written again with its phone, which follows it.
        assert_eq!(
            fx.engine.register().arena.len(),
            size + "王芳芳".len() + "13900000003".len()
        );
        let reg = fx.engine.register();
        let r = reg.row_of(reg.slot(pid(3)).unwrap()).unwrap();
        assert_eq!(
            (reg.resident(r).name, reg.resident(r).phone),
            ("王芳芳", "13900000003")
        );
    }

    #[test]
    fn a_moved_out_resident_registered_again_counts_as_inserted() {
        let mut fx = Fx::new(Policy::default());
        let now = t("2022-04-19T08:00:00+08:00");
        fx.register(vec![row(1, "甲", "1", "王")], now);
        fx.move_out(1, now);
        assert_eq!(fx.engine.resident_count(), 0);
        let p = fx.register(vec![row(1, "甲", "1", "王")], now);
        assert_eq!(
            p,
            crate::engine::Prepared::Import {
                total: 1,
                inserted: 1,
                updated: 0,
                unchanged: 0
            }
        );
        assert_eq!(fx.engine.resident_count(), 1);
    }
}
