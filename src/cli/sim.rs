//! The round-day simulator shared by `rollcall demo` and `rollcall load`: a
//! city's people and sampling sites, the daily curve of arrivals, pooled
//! tubes, scanner uploads with the faults of a real day (sites offline for
//! hours that sync after the close, retries that resend a batch, mistyped
//! scans, visitors from elsewhere), and the small HTTP client both use.
//!
//! It talks to the server only through the contract (`docs/api.md`), so it can be
//! pointed at any running rollcall. Depends on `domain` (the ID rules) and
//! `synth` (generated cities); nothing in the server depends on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use crate::domain::Timestamp;
use crate::domain::person_id::compute_check_char;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// One resident as the simulator needs them: the ID as sent, and which
/// community (index into [`City::communities`]) they belong to.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub community: u32,
}

/// A sampling site (`sites.csv`): its id, as bound to a scanner token, and
/// the community whose residents it serves.
#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub community: u32,
}

/// The people and sites a simulation draws from.
#[derive(Debug, Clone, Default)]
pub struct City {
    pub people: Vec<Person>,
    /// Community paths (`崇文路街道/学院社区`), in order of first appearance.
    pub communities: Vec<String>,
    pub sites: Vec<Site>,
}

impl City {
    /// Reads `register.csv` (header `person_id,name,phone,area,household`) and,
    /// when given, `sites.csv` (`site_id,name,area`). A site's area is its
    /// community; without a sites file each community gets one site `S01`….
    pub fn from_csv(register: &str, sites: Option<&str>) -> anyhow::Result<City> {
        let mut city = City::default();
        let mut index: BTreeMap<String, u32> = BTreeMap::new();
        let mut rdr = csv::Reader::from_reader(register.as_bytes());
        let headers = rdr
            .headers()
            .context("reading the register's header")?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("the register has no `{name}` column"))
        };
        let (id_col, area_col) = (col("person_id")?, col("area")?);
        for (i, row) in rdr.records().enumerate() {
            let row = row.with_context(|| format!("register line {}", i + 2))?;
            let community = community_of(row.get(area_col).unwrap_or_default());
            let c = city.community_index(&mut index, community);
            city.people.push(Person {
                id: row.get(id_col).unwrap_or_default().to_owned(),
                community: c,
            });
        }
        match sites {
            Some(text) => {
                let mut rdr = csv::Reader::from_reader(text.as_bytes());
                for (i, row) in rdr.records().enumerate() {
                    let row = row.with_context(|| format!("sites line {}", i + 2))?;
                    let (Some(id), Some(area)) = (row.get(0), row.get(2)) else {
                        anyhow::bail!("sites line {}: expected site_id,name,area", i + 2);
                    };
                    let c = city.community_index(&mut index, community_of(area));
                    city.sites.push(Site {
                        id: id.to_owned(),
                        community: c,
                    });
                }
            }
            None => city.default_sites(),
        }
        Ok(city)
    }

    /// The city `rollcall gen --residents n --seed seed` writes, without the disk.
    pub fn generated(residents: u64, seed: u64) -> City {
        let mut city = City::default();
        let mut index = BTreeMap::new();
        for row in crate::synth::city(residents, seed) {
            let c = city.community_index(&mut index, community_of(row.area.as_str()));
            city.people.push(Person {
                id: row.person_id.to_string(),
                community: c,
            });
        }
        city.default_sites();
        city
    }

    /// Reads people from a file: a `register.csv` (recognised by its header)
    /// or one ID per line.
    pub fn from_file(path: &Path) -> anyhow::Result<City> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if text.starts_with("person_id") {
            return City::from_csv(&text, None)
                .with_context(|| format!("reading the register {}", path.display()));
        }
        let mut city = City {
            communities: vec![String::new()],
            ..City::default()
        };
        city.people = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| Person {
                id: l.to_owned(),
                community: 0,
            })
            .collect();
        city.default_sites();
        Ok(city)
    }

    fn community_index(&mut self, index: &mut BTreeMap<String, u32>, community: &str) -> u32 {
        if let Some(&i) = index.get(community) {
            return i;
        }
        let i = self.communities.len() as u32;
        self.communities.push(community.to_owned());
        index.insert(community.to_owned(), i);
        i
    }

    fn default_sites(&mut self) {
        self.sites = (0..self.communities.len().max(1))
            .map(|c| Site {
                id: format!("S{:02}", c + 1),
                community: c as u32,
            })
            .collect();
    }
}

/// The first two segments of an area path: subdistrict and community.
fn community_of(area: &str) -> &str {
    match area.match_indices('/').nth(1) {
        Some((i, _)) => &area[..i],
        None => area,
    }
}

/// FNV-1a, 64 bits: a hash that is the same in Rust, Python and SQL, so that
/// `benches/compare/` picks the same sampled people in every engine.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether `id` falls in the sampled `fraction` of a city, by [`fnv1a64`]:
/// `fnv1a64(id) % 1_000_000 < fraction × 1_000_000`.
pub fn selected(id: &str, fraction: f64) -> bool {
    (fnv1a64(id) % 1_000_000) < (fraction * 1_000_000.0).round() as u64
}

/// A valid ID that no register built from region 610802 holds: a visitor
/// from region 110105 with a random birth date and sequence.
pub fn visitor_id(rng: &mut impl Rng) -> String {
    let first = format!(
        "110105{:04}{:02}{:02}{:03}",
        rng.random_range(1950..2005),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
        rng.random_range(0..1000)
    );
    let digits: [u8; 17] = first.as_bytes().try_into().expect("17 digits");
    format!("{first}{}", compute_check_char(&digits))
}

/// `id` with its check character replaced by a wrong one (a mistyped scan).
pub fn with_wrong_check(id: &str) -> String {
    let last = id.chars().last().unwrap_or('0');
    let wrong = if last == '1' { '2' } else { '1' };
    format!("{}{wrong}", &id[..id.len() - 1])
}

/// Where in the window a person turns up, as a fraction in `[0, 1)`: a
/// morning peak (people on their way out), a lull, an evening peak (on the
/// way home) and a trickle all day. Shaped after the hourly counts sampling
/// sites reported on round days.
pub fn curve_point(rng: &mut impl Rng) -> f64 {
    loop {
        let pick: f64 = rng.random();
        let x = if pick < 0.42 {
            normal(rng, 0.17, 0.07)
        } else if pick < 0.80 {
            normal(rng, 0.80, 0.07)
        } else {
            rng.random()
        };
        if (0.0..1.0).contains(&x) {
            return x;
        }
    }
}

/// One draw of N(mean, sd), by Box–Muller (no distribution crate needed).
fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A short tag that makes tube ids of this run unique city-wide, also when
/// a demo or load run is repeated against the same data.
pub fn run_tag() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        % 36u64.pow(7);
    let mut tag = Vec::with_capacity(7);
    for _ in 0..7 {
        tag.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize]);
        n /= 36;
    }
    tag.reverse();
    String::from_utf8(tag).expect("ASCII")
}

/// Appends one record as JSON. IDs, tube ids and times are ASCII without
/// quotes or backslashes (the simulator makes them), so nothing needs escaping;
/// this is the hot path of `load`.
pub fn push_record(out: &mut String, person_id: &str, tube_id: &str, at: &str, site: Option<&str>) {
    let _ = write!(
        out,
        r#"{{"person_id":"{person_id}","tube_id":"{tube_id}","collected_at":"{at}""#
    );
    if let Some(s) = site {
        out.push_str(r#","site":"#);
        out.push_str(&serde_json::to_string(s).expect("a string serialises"));
    }
    out.push('}');
}

/// One scan at a site: who, into which tube, when.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Index into [`City::people`], or `None` for a visitor not in the register.
    pub person: Option<u32>,
    pub id: String,
    pub tube: u32,
    pub at: i64,
}

/// A pooled tube: its id, site and how many people it holds.
#[derive(Debug, Clone)]
pub struct Tube {
    pub id: String,
    pub site: u32,
    pub members: Vec<u32>,
    /// Whether any of its records are held by an offline site until after the close.
    pub held: bool,
}

/// A mistyped scan: the ID's check character (`invalid_person_id`) or the
/// tube label (`invalid_tube_id`) misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadScan {
    WrongCheck,
    MisreadTube,
}

/// One `POST /v1/records` a site's scanner makes.
#[derive(Debug, Clone)]
pub struct Upload {
    pub site: u32,
    /// The body, `{"records":[…]}`.
    pub body: String,
    /// Items in the body (valid scans plus bad ones).
    pub items: usize,
    /// Items that are mistyped scans and will be rejected.
    pub bad: usize,
    /// Sent twice, as when a response is lost and the scanner retries.
    pub resend: bool,
}

/// What shapes a simulated round day.
#[derive(Debug, Clone)]
pub struct DayConfig {
    /// The window's start and the end of on-time sampling (epoch millis).
    pub opens_ms: i64,
    pub ends_ms: i64,
    /// Share of residents who turn up inside the window.
    pub show_up: f64,
    /// How many sites lose their connection, and for how long (hours).
    pub offline_sites: usize,
    pub offline_hours: (f64, f64),
    /// Scanners upload what they scanned every this many minutes.
    pub upload_minutes: i64,
    /// Chance that an upload is sent twice (a lost response, a retry).
    pub resend_rate: f64,
    /// Mistyped scans (bad check character, misread tube label) in all.
    pub bad_scans: usize,
    /// Visitors from elsewhere swabbed at the sites (not in the register).
    pub visitors: usize,
    /// Most items in one upload when an offline site syncs.
    pub sync_batch: usize,
    pub seed: u64,
}

/// A planned round day: every scan, the uploads that carry them (on time,
/// in waves of one upload interval, and held by offline sites), and the
/// tubes they fill.
#[derive(Debug, Default)]
pub struct DayPlan {
    pub scans: Vec<Scan>,
    pub tubes: Vec<Tube>,
    /// On-time uploads, one wave per upload interval, in time order.
    pub waves: Vec<Vec<Upload>>,
    /// What offline sites held, sent after the close.
    pub held: Vec<Upload>,
    /// Per offline site: (site index, offline from, until) in epoch millis.
    pub offline: Vec<(u32, i64, i64)>,
    /// Registered people scanned on time, and only in held uploads.
    pub on_time_people: Vec<u32>,
    pub held_people: Vec<u32>,
    /// Registered people who did not turn up inside the window.
    pub no_shows: Vec<u32>,
    pub visitors: usize,
}

impl DayPlan {
    /// Plans a day for `city`. Each registered person is scanned at most
    /// once, at a site of their community; tubes fill in arrival order at
    /// each site (sites alternate between 10- and 20-person pools).
    pub fn new(city: &City, cfg: &DayConfig, tag: &str) -> DayPlan {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut plan = DayPlan::default();
        let arrivals = plan.arrivals(city, cfg, &mut rng);
        plan.go_offline(city, cfg, &mut rng);
        plan.fill_tubes(city, arrivals, tag);
        plan.make_uploads(cfg, &mut rng);
        plan
    }

    /// Who turns up where and when, sorted by site and time: `(site, at,
    /// person, id)`. Fills `no_shows` and `visitors`.
    fn arrivals(
        &mut self,
        city: &City,
        cfg: &DayConfig,
        rng: &mut StdRng,
    ) -> Vec<(u32, i64, Option<u32>, String)> {
        let span = (cfg.ends_ms - cfg.opens_ms).max(1);
        let mut by_community: Vec<Vec<u32>> = vec![Vec::new(); city.communities.len().max(1)];
        for (i, s) in city.sites.iter().enumerate() {
            by_community[s.community as usize].push(i as u32);
        }
        let all_sites: Vec<u32> = (0..city.sites.len() as u32).collect();
        let mut arrivals = Vec::with_capacity(city.people.len() + cfg.visitors);
        for (i, p) in city.people.iter().enumerate() {
            if !rng.random_bool(cfg.show_up) {
                self.no_shows.push(i as u32);
                continue;
            }
            let sites = match &by_community[p.community as usize] {
                s if s.is_empty() => &all_sites,
                s => s,
            };
            let site = sites[rng.random_range(0..sites.len())];
            let at = cfg.opens_ms + (curve_point(rng) * span as f64) as i64;
            arrivals.push((site, at, Some(i as u32), p.id.clone()));
        }
        for _ in 0..cfg.visitors {
            let site = rng.random_range(0..city.sites.len() as u32);
            let at = cfg.opens_ms + (curve_point(rng) * span as f64) as i64;
            arrivals.push((site, at, None, visitor_id(rng)));
        }
        self.visitors = cfg.visitors;
        arrivals.sort_by_key(|a| (a.0, a.1));
        arrivals
    }

    /// Offline spells: random sites, random stretches inside the window.
    fn go_offline(&mut self, city: &City, cfg: &DayConfig, rng: &mut StdRng) {
        let span = (cfg.ends_ms - cfg.opens_ms).max(1);
        let mut order: Vec<u32> = (0..city.sites.len() as u32).collect();
        order.shuffle(rng);
        for &site in order.iter().take(cfg.offline_sites) {
            let len = (rng.random_range(cfg.offline_hours.0..=cfg.offline_hours.1) * HOUR_MS as f64)
                as i64;
            let len = len.min(span);
            let from = cfg.opens_ms + rng.random_range(0..=(span - len));
            self.offline.push((site, from, from + len));
        }
    }

    /// Tubes, filled in arrival order per site.
    fn fill_tubes(
        &mut self,
        city: &City,
        arrivals: Vec<(u32, i64, Option<u32>, String)>,
        tag: &str,
    ) {
        let mut site_tubes = vec![0u32; city.sites.len()];
        let mut current: Vec<Option<u32>> = vec![None; city.sites.len()];
        for (site, at, person, id) in arrivals {
            let pool = if site % 2 == 0 { 10 } else { 20 };
            let tube = match current[site as usize] {
                Some(t) if self.tubes[t as usize].members.len() < pool => t,
                _ => {
                    site_tubes[site as usize] += 1;
                    self.tubes.push(Tube {
                        id: format!(
                            "T{tag}-{}-{:05}",
                            city.sites[site as usize].id, site_tubes[site as usize]
                        ),
                        site,
                        members: Vec::new(),
                        held: false,
                    });
                    let t = (self.tubes.len() - 1) as u32;
                    current[site as usize] = Some(t);
                    t
                }
            };
            let idx = self.scans.len() as u32;
            self.tubes[tube as usize].members.push(idx);
            self.scans.push(Scan {
                person,
                id,
                tube,
                at,
            });
        }
    }

    /// Uploads: per site and interval while online; what offline sites held,
    /// in sync batches. Places the bad scans and picks the resent uploads.
    fn make_uploads(&mut self, cfg: &DayConfig, rng: &mut StdRng) {
        let span = (cfg.ends_ms - cfg.opens_ms).max(1);
        let slot_ms = cfg.upload_minutes.max(1) * MINUTE_MS;
        let slots = ((span + slot_ms - 1) / slot_ms).max(1) as usize;
        let mut on_time: Vec<BTreeMap<u32, Vec<u32>>> = vec![BTreeMap::new(); slots];
        let mut held: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (i, s) in self.scans.iter().enumerate() {
            let site = self.tubes[s.tube as usize].site;
            let offline = self
                .offline
                .iter()
                .any(|&(o, a, b)| o == site && (a..b).contains(&s.at));
            if offline {
                held.entry(site).or_default().push(i as u32);
                self.tubes[s.tube as usize].held = true;
                self.held_people.extend(s.person);
            } else {
                let slot = (((s.at - cfg.opens_ms) / slot_ms) as usize).min(slots - 1);
                on_time[slot].entry(site).or_default().push(i as u32);
                self.on_time_people.extend(s.person);
            }
        }
        self.on_time_people.sort_unstable();
        self.held_people.sort_unstable();

        let mut bad_left = cfg.bad_scans;
        let total_uploads: usize = on_time.iter().map(BTreeMap::len).sum();
        let bad_every = (total_uploads / cfg.bad_scans.max(1)).max(1);
        let mut n_upload = 0usize;
        for wave in on_time {
            let mut uploads = Vec::with_capacity(wave.len());
            for (site, scans) in wave {
                n_upload += 1;
                let bad = (bad_left > 0 && n_upload.is_multiple_of(bad_every)).then(|| {
                    bad_left -= 1;
                    // Alternate the two kinds of mistyped scan over the day.
                    if bad_left.is_multiple_of(2) {
                        BadScan::WrongCheck
                    } else {
                        BadScan::MisreadTube
                    }
                });
                uploads.push(self.upload(site, &scans, bad, rng.random_bool(cfg.resend_rate)));
            }
            self.waves.push(uploads);
        }
        for (site, scans) in held {
            let chunks: Vec<&[u32]> = scans.chunks(cfg.sync_batch.max(1)).collect();
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                // The last chunk of each sync is retried once: the link
                // dropped before the answer came back.
                let u = self.upload(site, chunk, None, i + 1 == n);
                self.held.push(u);
            }
        }
    }

    /// Builds one upload's body; a `bad` mistyped scan goes in front of the
    /// first real one (the operator rescanned after the app complained).
    fn upload(&self, site: u32, scans: &[u32], bad: Option<BadScan>, resend: bool) -> Upload {
        let mut body = String::with_capacity(32 + scans.len() * 110);
        body.push_str(r#"{"records":["#);
        let mut items = 0;
        for (k, &i) in scans.iter().enumerate() {
            let s = &self.scans[i as usize];
            let tube = &self.tubes[s.tube as usize].id;
            let at = Timestamp::from_millis(s.at).to_rfc3339();
            if k == 0
                && let Some(b) = bad
            {
                match b {
                    BadScan::WrongCheck => {
                        push_record(&mut body, &with_wrong_check(&s.id), tube, &at, None);
                    }
                    BadScan::MisreadTube => {
                        push_record(&mut body, &s.id, &format!("{tube}#"), &at, None);
                    }
                }
                body.push(',');
                items += 1;
            }
            if k > 0 {
                body.push(',');
            }
            push_record(&mut body, &s.id, tube, &at, None);
            items += 1;
        }
        body.push_str("]}");
        Upload {
            site,
            body,
            items,
            bad: usize::from(bad.is_some()),
            resend,
        }
    }
}

/// A small JSON-over-HTTP client for the contract.
#[derive(Clone, Debug)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

/// One answer: status and body (JSON when it parses, else `Null`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The contract's `error.code`, or an empty string.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// This reply, or an error naming what was attempted, status and code.
    pub fn expect(self, status: u16, what: &str) -> anyhow::Result<Value> {
        if self.status == status {
            Ok(self.body)
        } else {
            anyhow::bail!(
                "{what}: HTTP {} {} {}",
                self.status,
                self.code(),
                self.body["error"]["message"].as_str().unwrap_or_default()
            )
        }
    }
}

impl Api {
    /// A client for `base` (`http://host:port`), keeping up to `connections`
    /// idle connections so concurrent workers reuse theirs.
    pub fn new(base: &str, connections: usize) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .tcp_nodelay(true)
            .timeout(Duration::from_mins(2))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(
        &self,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let rb = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .query(query);
        Self::send(rb, path).await
    }

    /// A GET whose answer is text (door-knock messages); fails unless 200.
    pub async fn get_text(
        &self,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .with_context(|| format!("sending {path}"))?;
        anyhow::ensure!(r.status().is_success(), "{path}: HTTP {}", r.status());
        r.text()
            .await
            .with_context(|| format!("reading the answer to {path}"))
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Reply> {
        let body = serde_json::to_vec(body).context("serialising a request body")?;
        self.post_raw(path, token, "application/json", body).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<Reply> {
        let rb = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        Self::send(rb, path).await
    }

    async fn send(rb: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Reply> {
        let r = rb.send().await.with_context(|| format!("sending {path}"))?;
        let status = r.status().as_u16();
        let bytes = r
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {path}"))?;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// `POST /v1/tokens`; returns the token.
    pub async fn token(&self, admin: &str, body: &Value) -> anyhow::Result<String> {
        let v = self
            .post_json("/v1/tokens", admin, body)
            .await?
            .expect(201, "creating a token")?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("the token answer has no `token`")
    }
}

/// The six counts of a round (`GET /v1/rounds/{id}` → `counts`, or a coverage node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub in_scope: u64,
    pub sampled: u64,
    pub late: u64,
    pub made_up: u64,
    pub exempt: u64,
    pub missing: u64,
}

impl Counts {
    /// Reads the six counts from an object holding them.
    pub fn from_json(v: &Value) -> anyhow::Result<Counts> {
        let n = |k: &str| {
            v[k].as_u64()
                .with_context(|| format!("no count `{k}` in {v}"))
        };
        Ok(Counts {
            in_scope: n("in_scope")?,
            sampled: n("sampled")?,
            late: n("late")?,
            made_up: n("made_up")?,
            exempt: n("exempt")?,
            missing: n("missing")?,
        })
    }

    /// Share of in-scope people sampled in the window (late ones included).
    pub fn sampled_share(&self) -> f64 {
        if self.in_scope == 0 {
            0.0
        } else {
            self.sampled as f64 / self.in_scope as f64
        }
    }
}

/// Groups digits by thousands: `56717` → `56,717`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PersonId;

    #[test]
    fn visitor_ids_are_valid_and_a_wrong_check_character_is_not() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let id = visitor_id(&mut rng);
            assert!(id.parse::<PersonId>().is_ok(), "{id}");
            assert!(with_wrong_check(&id).parse::<PersonId>().is_err(), "{id}");
        }
    }

    #[test]
    fn the_curve_has_a_morning_and_an_evening_peak() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            hist[(curve_point(&mut rng) * 10.0) as usize] += 1;
        }
        assert!(hist[1] > 2 * hist[5] && hist[8] > 2 * hist[5], "{hist:?}");
    }

    #[test]
    fn selection_by_hash_takes_about_the_asked_share() {
        let city = City::generated(20_000, 1);
        let n = city.people.iter().filter(|p| selected(&p.id, 0.95)).count();
        assert!((18_800..19_200).contains(&n), "{n}");
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_day_plan_scans_each_person_at_most_once_in_tubes_within_the_pool() {
        let city = City::from_csv(
            "person_id,name,phone,area,household\n\
             610802198503120017,a,13900000000,X街道/A社区/g/b/f,h\n",
            Some("site_id,name,area\nS01,s,X街道/A社区\nS02,s,X街道/A社区\n"),
        )
        .unwrap();
        let mut city2 = city.clone();
        for i in 0..2_000 {
            let mut p = city.people[0].clone();
            p.id = format!("{i:018}");
            city2.people.push(p);
        }
        let cfg = DayConfig {
            opens_ms: 0,
            ends_ms: 10 * HOUR_MS,
            show_up: 0.9,
            offline_sites: 1,
            offline_hours: (2.0, 3.0),
            upload_minutes: 10,
            resend_rate: 0.05,
            bad_scans: 4,
            visitors: 5,
            sync_batch: 100,
            seed: 7,
        };
        let plan = DayPlan::new(&city2, &cfg, "TAG");
        let scanned = plan.on_time_people.len() + plan.held_people.len();
        assert_eq!(scanned + plan.no_shows.len(), city2.people.len());
        assert_eq!(plan.scans.len(), scanned + 5);
        assert!(
            plan.tubes
                .iter()
                .all(|t| t.members.len() <= 20 && !t.members.is_empty())
        );
        let bad: usize = plan.waves.iter().flatten().map(|u| u.bad).sum();
        assert_eq!(bad, 4);
        assert!(!plan.held.is_empty());
        for u in plan.waves.iter().flatten().chain(&plan.held) {
            let v: Value = serde_json::from_str(&u.body).unwrap();
            assert_eq!(v["records"].as_array().unwrap().len(), u.items);
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(56_717), "56,717");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
