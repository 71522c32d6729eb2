//! A synthetic city — `register.csv`, `heads.csv`, `sites.csv` — for `rollcall
//! gen`, the demo, the simulators, the load generator and the benchmarks.
//!
//! At the default size it is the fixture subdistrict of the design brief exactly
//! (`fixtures/chongwen/` is seed 1): 崇文路街道 with 7 communities, 64 grids,
//! 45 residential compounds, 24 bungalow areas, 2 markets, 15,270 households,
//! 56,717 residents and 38 sampling sites. Larger sizes are several
//! subdistricts of about that size each, so 10 million residents make 176 of
//! them; smaller sizes shrink the one subdistrict.
//!
//! Areas have five levels: subdistrict / community / grid / block (a
//! compound's `…号楼`, a bungalow area's lane `…巷`, a market's street `…街`) /
//! unit (`…层`, `…号院`, `…号商铺`). Every name is chosen so that plain string
//! order is generation order, which makes `register.csv` come out sorted by
//! area, household and name — the order the engine numbers residents in.
//!
//! Deterministic: the same seed and size give the same bytes, on any platform
//! and with any dependency versions, because the generator brings its own
//! PRNG (xoshiro256**) and does all allocation in integers. Memory is bounded
//! by one subdistrict's plan (about a megabyte) plus the ID counters; rows
//! stream to buffered writers. Depends on `domain` only.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{Datelike, Duration, NaiveDate};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::domain::{AreaPath, PersonId, RegisterRow};

/// Residents of the default city, the fixture subdistrict of the design brief.
pub const DEFAULT_RESIDENTS: u64 = 56_717;

// The default subdistrict's shape; other sizes scale these by residents.
const HOUSEHOLDS: u64 = 15_270;
const COMMUNITIES: u64 = 7;
const GRIDS: u64 = 64;
const COMPOUNDS: u64 = 45;
const BUNGALOW_AREAS: u64 = 24;
const MARKETS: u64 = 2;
const SITES: u64 = 38;

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenSummary {
    pub subdistricts: u64,
    pub communities: u64,
    pub grids: u64,
    pub compounds: u64,
    pub bungalow_areas: u64,
    pub markets: u64,
    /// Block-level nodes: buildings, lanes and streets.
    pub blocks: u64,
    /// Unit-level nodes: floors, courtyards and shops.
    pub units: u64,
    pub households: u64,
    pub residents: u64,
    pub sites: u64,
    /// Rows of heads.csv (a few floors, courtyards and shops have no head).
    pub heads: u64,
}

/// Writes `register.csv`, `heads.csv` and `sites.csv` for a city of
/// `residents` people into `out` (created if missing). Shows a progress bar
/// when `progress` is set and stderr is a terminal.
pub fn generate(
    residents: u64,
    seed: u64,
    out: &Path,
    progress: bool,
) -> anyhow::Result<GenSummary> {
    anyhow::ensure!(residents > 0, "--residents must be at least 1");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let open = |name: &str| -> anyhow::Result<BufWriter<File>> {
        let path = out.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    };
    let mut register = open("register.csv")?;
    let mut heads = open("heads.csv")?;
    let mut sites = open("sites.csv")?;

    let bar = if progress && io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(residents), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} residents, {eta} left")
                .expect("a valid progress template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut write = || -> io::Result<GenSummary> {
        register.write_all(b"person_id,name,phone,area,household\n")?;
        heads.write_all(b"area,title,name,phone\n")?;
        sites.write_all(b"site_id,name,area\n")?;
        let plan = CityPlan::new(residents, seed);
        let mut ids = IdAllocator::default();
        let mut summary = GenSummary::default();
        for spec in &plan.subdistricts {
            let sd = Subdistrict::build(&plan, spec);
            sd.count_into(&mut summary);
            summary.heads += sd.write_heads(&mut heads, seed)?;
            sd.write_sites(&mut sites, &plan)?;
            let mut rows = SubdistrictRows::new(sd, seed);
            let mut since_tick = 0;
            while let Some(row) = rows.next_row(&mut ids) {
                write_register_row(&mut register, &row)?;
                since_tick += 1;
                if since_tick == 4096 {
                    bar.inc(since_tick);
                    since_tick = 0;
                }
            }
            bar.inc(since_tick);
        }
        register.flush()?;
        heads.flush()?;
        sites.flush()?;
        Ok(summary)
    };
    let summary = write().with_context(|| format!("writing the city into {}", out.display()))?;
    bar.finish_and_clear();
    Ok(summary)
}

/// The rows of `register.csv` for the same size and seed, in the same order,
/// without touching the disk (for benches and tests).
pub fn city(residents: u64, seed: u64) -> impl Iterator<Item = RegisterRow> {
    CityRows {
        plan: CityPlan::new(residents, seed),
        next_subdistrict: 0,
        current: None,
        ids: IdAllocator::default(),
    }
}

/// One line of `register.csv`. Generated text never holds `,`, `"` or a line
/// break, so no field needs quoting.
fn write_register_row(w: &mut impl Write, row: &RegisterRow) -> io::Result<()> {
    writeln!(
        w,
        "{},{},{},{},{}",
        row.person_id, row.name, row.phone, row.area, row.household
    )
}

struct CityRows {
    plan: CityPlan,
    next_subdistrict: usize,
    current: Option<SubdistrictRows>,
    ids: IdAllocator,
}

impl Iterator for CityRows {
    type Item = RegisterRow;

    fn next(&mut self) -> Option<RegisterRow> {
        loop {
            if let Some(rows) = &mut self.current
                && let Some(row) = rows.next_row(&mut self.ids)
            {
                return Some(row);
            }
            let spec = self.plan.subdistricts.get(self.next_subdistrict)?;
            self.next_subdistrict += 1;
            let sd = Subdistrict::build(&self.plan, spec);
            self.current = Some(SubdistrictRows::new(sd, self.plan.seed));
        }
    }
}

// ---------------------------------------------------------------------------
// Randomness: our own PRNG, so the bytes never change with a dependency.

/// `SplitMix64`, used to seed and to mix stream numbers.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of a few numbers, for choices that must not depend on call order.
fn mix(parts: &[u64]) -> u64 {
    let mut state = 0x0123_4567_89AB_CDEF;
    let mut out = 0;
    for &p in parts {
        state ^= p;
        out = splitmix64(&mut state);
    }
    out
}

/// `xoshiro256**` (Blackman and Vigna), seeded through `SplitMix64`.
struct Rng([u64; 4]);

/// Independent random streams of one subdistrict, so that writing heads
/// (which `city` skips) never shifts the residents' draws.
#[derive(Clone, Copy)]
enum Stream {
    Plan = 1,
    People = 2,
    Heads = 3,
}

impl Rng {
    fn new(seed: u64, subdistrict: u64, stream: Stream) -> Rng {
        let mut state = mix(&[seed, subdistrict, stream as u64]);
        Rng([
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (multiply-shift; the bias is far below anything
    /// a synthetic city could show).
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given weights.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut r = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Integer allocation helpers: no floating point, so no platform can differ.

/// `count * share / DEFAULT_RESIDENTS`, rounded half up.
fn scaled(count: u64, share: u64) -> u64 {
    let num = u128::from(count) * u128::from(share) * 2 + u128::from(DEFAULT_RESIDENTS);
    (num / (2 * u128::from(DEFAULT_RESIDENTS))) as u64
}

/// Splits `total` into parts proportional to `weights`, each at least
/// `min_each`; the rounding remainder goes to the largest fractions (ties to
/// the lower index). Exact: the parts always sum to `total`.
fn split(total: u64, weights: &[u64], min_each: u64) -> Vec<u64> {
    let n = weights.len() as u64;
    assert!(
        n > 0 && total >= min_each * n,
        "split: {total} into {n} parts of at least {min_each}"
    );
    let free = u128::from(total - min_each * n);
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum::<u128>().max(1);
    let mut parts = Vec::with_capacity(weights.len());
    let mut fractions = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let exact = free * u128::from(w);
        parts.push(min_each + (exact / sum) as u64);
        fractions.push((exact % sum, i));
    }
    // Fewer than n units are left over, so one pass suffices.
    let left = (total - parts.iter().sum::<u64>()) as usize;
    fractions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &fractions[..left] {
        parts[i] += 1;
    }
    parts
}

/// Weights around `base`: ±30 %, so siblings differ in size.
fn jittered(rng: &mut Rng, n: u64, base: u64) -> Vec<u64> {
    (0..n).map(|_| base * rng.between(70, 130)).collect()
}

/// Digits of `n`, at least 2: names are zero-padded to it so that string
/// order is numeric order (`09号楼` < `10号楼`).
fn width(n: u64) -> usize {
    digits(n).max(2)
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// Names cycle through a pool of `pool` entries; `index / pool` counts the
/// rounds, which the caller writes into the name (`翠苑小区2期`) so every
/// name is unique city-wide. 77 is coprime with every pool size used, so
/// neighbours look unrelated.
fn pooled(index: u64, pool: u64) -> (usize, u64) {
    (((index % pool) * 77 % pool) as usize, index / pool)
}

/// A round number to append, or nothing for the first round.
fn round_mark(round: u64) -> String {
    if round == 0 {
        String::new()
    } else {
        (round + 1).to_string()
    }
}

// ---------------------------------------------------------------------------
// Name tables.

const SUBDISTRICT_ROADS: [&str; 40] = [
    "崇文", "文昌", "建设", "解放", "人民", "和平", "新华", "中山", "胜利", "长安", "东风", "青年",
    "朝阳", "光明", "幸福", "友谊", "健康", "团结", "民主", "红旗", "太白", "雁塔", "曲江", "大明",
    "含光", "丰庆", "西华", "北关", "南门", "东关", "书院", "钟楼", "碑林", "永宁", "安定", "朱雀",
    "兴庆", "未央", "长乐", "金花",
];
const SUBDISTRICT_KINDS: [&str; 5] = ["路", "街", "门", "桥", "湖"];
/// Community names. `学院` is always taken and sorts first: every other name
/// starts with a code point above 学 (U+5B66).
const COMMUNITY_NAMES: [&str; 20] = [
    "学院", "崇文", "文昌", "新华", "朝阳", "湖滨", "翠华", "长乐", "青年", "西关", "育才", "桃园",
    "枣林", "槐荫", "滨河", "红旗", "荷塘", "银杏", "锦绣", "建设",
];
const COMPOUND_FIRST: [&str; 20] = [
    "翠", "锦", "金", "银", "桂", "兰", "梅", "竹", "松", "柏", "枫", "荷", "桃", "杏", "柳", "樱",
    "枣", "槐", "榆", "桐",
];
const COMPOUND_SECOND: [&str; 10] = ["苑", "园", "庭", "府", "城", "湾", "居", "轩", "阁", "邸"];
const COMPOUND_KINDS: [&str; 4] = ["小区", "花园", "家园", "新村"];
const LANE_FIRST: [&str; 20] = [
    "槐", "柳", "杏", "桃", "枣", "榆", "桑", "竹", "梧", "椿", "梨", "松", "柏", "桂", "梅", "兰",
    "菊", "荷", "芦", "苇",
];
const LANE_SECOND: [&str; 10] = ["树", "荫", "花", "林", "园", "井", "坊", "桥", "塘", "院"];
const MARKET_NAMES: [&str; 20] = [
    "文昌", "建设", "解放", "人民", "和平", "新华", "中山", "胜利", "长安", "东风", "青年", "朝阳",
    "光明", "幸福", "友谊", "健康", "团结", "民主", "红旗", "太白",
];
const SURNAMES: [&str; 40] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "萧", "田", "董", "潘", "袁", "蔡", "蒋", "余",
];
/// Relative frequencies of [`SURNAMES`], roughly as in the census.
const SURNAME_WEIGHTS: [u64; 40] = [
    72, 71, 70, 55, 46, 31, 23, 20, 20, 18, 14, 13, 12, 11, 11, 10, 9, 9, 9, 9, 8, 7, 7, 7, 7, 6,
    6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
];
const GIVEN: [&str; 60] = [
    "伟", "芳", "娜", "秀", "英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "兰", "霞", "平", "刚", "桂", "华", "玉", "萍", "红", "建", "文", "辉", "鹏",
    "宇", "浩", "欣", "怡", "婷", "雪", "琳", "晨", "阳", "博", "轩", "涵", "睿", "子", "梓", "思",
    "佳", "嘉", "俊", "志", "海", "国", "春", "丹", "凤", "金", "荣", "慧",
];
/// Weights of household sizes 1..=7 (mean 3.75 before the exact fit).
const SIZE_WEIGHTS: [u64; 7] = [5, 15, 25, 25, 18, 9, 3];
/// Largest household the exact fit may make.
const MAX_HOUSEHOLD: u8 = 9;
/// Storeys of a building, drawn per compound.
const FLOORS: [u64; 13] = [5, 6, 6, 6, 7, 9, 11, 11, 12, 15, 18, 18, 26];
/// Flats per floor, drawn per compound.
const FLATS_PER_FLOOR: [u64; 4] = [2, 2, 3, 4];
/// Percent of floors, courtyards and shops without a head of their own, so
/// that the "nearest head above" rule of missing lists gets exercised.
const UNIT_WITHOUT_HEAD_PERCENT: u64 = 5;
/// Region codes of the ID numbers: subdistrict `i` (in name order) uses
/// `610802 + i % 98`, so 10 million people have room for unique IDs.
const REGION_FIRST: u64 = 610_802;
const REGIONS: u64 = 98;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date")
}

/// Day 0 of birth dates: people are born from 1930-01-01 to 2022-12-31, and
/// the generator counts their birthdays in days from the first.
fn birth_first() -> NaiveDate {
    date(1930, 1, 1)
}

/// How many birth days there are (1930-01-01 ..= 2022-12-31).
fn birth_days() -> u64 {
    (date(2022, 12, 31) - birth_first()).num_days() as u64 + 1
}

/// The first day number of people younger than 14 on 2022-04-19, the
/// campaign's day: they share the household head's phone.
fn minor_from_day() -> u64 {
    (date(2008, 4, 19) - birth_first()).num_days() as u64
}

const YEAR_DAYS: u64 = 365;

// ---------------------------------------------------------------------------
// The city plan: how many subdistricts, and each one's counts.

/// The counts of one subdistrict, scaled from the default by residents.
#[derive(Debug, Clone, Copy)]
struct Counts {
    residents: u64,
    households: u64,
    communities: u64,
    grids: u64,
    compounds: u64,
    bungalow_areas: u64,
    markets: u64,
    sites: u64,
}

impl Counts {
    fn for_residents(residents: u64) -> Counts {
        let households = scaled(residents, HOUSEHOLDS).clamp(1, residents.max(1));
        let mut compounds = scaled(residents, COMPOUNDS);
        let mut bungalow_areas = scaled(residents, BUNGALOW_AREAS);
        let mut markets = scaled(residents, MARKETS);
        if compounds + bungalow_areas + markets == 0 {
            compounds = 1;
        }
        // Every estate needs a household (only ever bites for tiny cities).
        while compounds + bungalow_areas + markets > households {
            if markets > 0 {
                markets -= 1;
            } else if bungalow_areas > 0 {
                bungalow_areas -= 1;
            } else {
                compounds -= 1;
            }
        }
        let estates = compounds + bungalow_areas + markets;
        let grids = scaled(residents, GRIDS).clamp(1, estates);
        let communities = scaled(residents, COMMUNITIES).clamp(1, grids);
        Counts {
            residents,
            households,
            communities,
            grids,
            compounds,
            bungalow_areas,
            markets,
            sites: scaled(residents, SITES).max(1),
        }
    }
}

struct SubdistrictSpec {
    /// Position in name order: the stream number of its randomness.
    index: u64,
    name: String,
    region: u64,
    counts: Counts,
    /// City-wide numbers of its first site, compound, lane and market.
    first_site: u64,
    first_compound: u64,
    first_lane: u64,
    first_market: u64,
}

struct CityPlan {
    seed: u64,
    subdistricts: Vec<SubdistrictSpec>,
    site_width: usize,
}

impl CityPlan {
    fn new(residents: u64, seed: u64) -> CityPlan {
        let n = if residents == 0 {
            0
        } else {
            scaled(residents, 1).max(1)
        };
        let mut named: Vec<(String, u64)> = Vec::with_capacity(n as usize);
        if n > 0 {
            for (i, r) in split(residents, &vec![1; n as usize], 1)
                .into_iter()
                .enumerate()
            {
                let pool = (SUBDISTRICT_ROADS.len() * SUBDISTRICT_KINDS.len()) as u64;
                let (slot, round) = pooled(i as u64, pool);
                let road = SUBDISTRICT_ROADS[slot % SUBDISTRICT_ROADS.len()];
                let kind = SUBDISTRICT_KINDS[slot / SUBDISTRICT_ROADS.len()];
                named.push((format!("{road}{kind}{}街道", round_mark(round)), r));
            }
        }
        named.sort();
        let mut subdistricts = Vec::with_capacity(named.len());
        let (mut site, mut compound, mut lane, mut market) = (0, 0, 0, 0);
        for (index, (name, r)) in named.into_iter().enumerate() {
            let counts = Counts::for_residents(r);
            subdistricts.push(SubdistrictSpec {
                index: index as u64,
                name,
                region: REGION_FIRST + index as u64 % REGIONS,
                counts,
                first_site: site,
                first_compound: compound,
                first_lane: lane,
                first_market: market,
            });
            site += counts.sites;
            compound += counts.compounds;
            lane += counts.bungalow_areas;
            market += counts.markets;
        }
        CityPlan {
            seed,
            subdistricts,
            site_width: width(site),
        }
    }
}

// ---------------------------------------------------------------------------
// One subdistrict's tree.

#[derive(Clone, Copy, PartialEq, Eq)]
enum EstateKind {
    Compound,
    BungalowArea,
    Market,
}

impl EstateKind {
    fn block_title(self) -> &'static str {
        match self {
            EstateKind::Compound => "楼栋长",
            EstateKind::BungalowArea => "巷长",
            EstateKind::Market => "街长",
        }
    }

    fn unit_title(self) -> &'static str {
        match self {
            EstateKind::Compound => "楼层长",
            EstateKind::BungalowArea => "院长",
            EstateKind::Market => "店长",
        }
    }

    /// Households of a typical estate of this kind, as a weight.
    fn weight(self) -> u64 {
        match self {
            EstateKind::Compound => 272,
            EstateKind::BungalowArea => 120,
            EstateKind::Market => 60,
        }
    }
}

struct Household {
    id: String,
    size: u8,
}

struct Unit {
    path: AreaPath,
    households: Vec<Household>,
}

struct Block {
    path: AreaPath,
    kind: EstateKind,
    units: Vec<Unit>,
}

struct Grid {
    path: AreaPath,
    blocks: Vec<Block>,
}

struct Community {
    path: AreaPath,
    grids: Vec<Grid>,
    sites: u64,
}

struct Subdistrict {
    index: u64,
    region: u64,
    counts: Counts,
    first_site: u64,
    communities: Vec<Community>,
}

/// A block before it has a place: its segment name and its units' names and
/// household IDs.
struct BlockDraft {
    name: String,
    kind: EstateKind,
    units: Vec<(String, Vec<String>)>,
}

fn child(parent: &AreaPath, segment: &str) -> AreaPath {
    parent
        .child(segment)
        .expect("generated names are valid path segments")
}

impl Subdistrict {
    fn build(plan: &CityPlan, spec: &SubdistrictSpec) -> Subdistrict {
        let c = spec.counts;
        let mut rng = Rng::new(plan.seed, spec.index, Stream::Plan);

        // Estates and their households.
        let mut estates: Vec<(EstateKind, u64)> = Vec::new();
        estates.extend((0..c.compounds).map(|i| (EstateKind::Compound, spec.first_compound + i)));
        estates
            .extend((0..c.bungalow_areas).map(|i| (EstateKind::BungalowArea, spec.first_lane + i)));
        estates.extend((0..c.markets).map(|i| (EstateKind::Market, spec.first_market + i)));
        let weights: Vec<u64> = estates
            .iter()
            .map(|(kind, _)| kind.weight() * rng.between(70, 130))
            .collect();
        let households = split(c.households, &weights, 1);

        // Estates to grids: one each, then the rest to the smallest grids.
        let mut order: Vec<usize> = (0..estates.len()).collect();
        rng.shuffle(&mut order);
        let grid_count = c.grids as usize;
        let mut grid_estates: Vec<Vec<usize>> = vec![Vec::new(); grid_count];
        let mut grid_households = vec![0u64; grid_count];
        for (pos, &e) in order.iter().enumerate() {
            let g = if pos < grid_count {
                pos
            } else {
                (0..grid_count)
                    .min_by_key(|&g| (grid_households[g], g))
                    .expect("at least one grid")
            };
            grid_estates[g].push(e);
            grid_households[g] += households[e];
        }

        // Communities: 学院 and a random choice of the rest, in name order.
        let mut others: Vec<usize> = (1..COMMUNITY_NAMES.len()).collect();
        rng.shuffle(&mut others);
        let mut community_names: Vec<String> = std::iter::once(0)
            .chain(others)
            .take(c.communities as usize)
            .map(|i| format!("{}社区", COMMUNITY_NAMES[i]))
            .collect();
        for i in COMMUNITY_NAMES.len()..c.communities as usize {
            // Only for subdistricts far above the default size.
            community_names.push(format!(
                "{}{}社区",
                COMMUNITY_NAMES[i % COMMUNITY_NAMES.len()],
                i / COMMUNITY_NAMES.len() + 1
            ));
        }
        community_names.sort();
        let grids_per_community = split(c.grids, &jittered(&mut rng, c.communities, 1), 1);
        let sites_per_community = split(
            c.sites,
            &grids_per_community,
            u64::from(c.sites >= c.communities),
        );

        let root = AreaPath::parse(&spec.name).expect("generated names are valid paths");
        let grid_width = width(c.grids);
        let mut next_grid = 0usize;
        let mut communities = Vec::with_capacity(community_names.len());
        for (ci, name) in community_names.iter().enumerate() {
            let path = child(&root, name);
            let mut grids = Vec::new();
            for _ in 0..grids_per_community[ci] {
                let grid_path = child(&path, &format!("第{:0grid_width$}网格", next_grid + 1));
                let mut drafts: Vec<BlockDraft> = Vec::new();
                for &e in &grid_estates[next_grid] {
                    let (kind, number) = estates[e];
                    drafts.extend(expand_estate(&mut rng, kind, number, households[e]));
                }
                let blocks = place_blocks(&grid_path, drafts);
                grids.push(Grid {
                    path: grid_path,
                    blocks,
                });
                next_grid += 1;
            }
            communities.push(Community {
                path,
                grids,
                sites: sites_per_community[ci],
            });
        }

        let mut sd = Subdistrict {
            index: spec.index,
            region: spec.region,
            counts: c,
            first_site: spec.first_site,
            communities,
        };
        sd.draw_household_sizes(&mut rng);
        sd
    }

    fn households_mut(&mut self) -> impl Iterator<Item = &mut Household> {
        self.communities
            .iter_mut()
            .flat_map(|c| &mut c.grids)
            .flat_map(|g| &mut g.blocks)
            .flat_map(|b| &mut b.units)
            .flat_map(|u| &mut u.households)
    }

    /// Draws a size for every household, then nudges random households up or
    /// down until the sizes add up to the subdistrict's residents exactly.
    fn draw_household_sizes(&mut self, rng: &mut Rng) {
        let target = self.counts.residents;
        let mut sizes: Vec<u8> = (0..self.counts.households)
            .map(|_| rng.weighted(&SIZE_WEIGHTS) as u8 + 1)
            .collect();
        let mut total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
        let n = sizes.len();
        while total != target {
            let grow = total < target;
            let fits = |s: u8| if grow { s < MAX_HOUSEHOLD } else { s > 1 };
            // A random household that can move; scan on from there if it cannot.
            let start = rng.below(n as u64) as usize;
            let i = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| fits(sizes[i]))
                .expect("residents fit between 1 and 9 per household");
            if grow {
                sizes[i] += 1;
                total += 1;
            } else {
                sizes[i] -= 1;
                total -= 1;
            }
        }
        for (household, size) in self.households_mut().zip(sizes) {
            household.size = size;
        }
    }

    fn count_into(&self, summary: &mut GenSummary) {
        let c = &self.counts;
        summary.subdistricts += 1;
        summary.communities += c.communities;
        summary.grids += c.grids;
        summary.compounds += c.compounds;
        summary.bungalow_areas += c.bungalow_areas;
        summary.markets += c.markets;
        summary.households += c.households;
        summary.residents += c.residents;
        summary.sites += c.sites;
        for block in self
            .communities
            .iter()
            .flat_map(|c| &c.grids)
            .flat_map(|g| &g.blocks)
        {
            summary.blocks += 1;
            summary.units += block.units.len() as u64;
        }
    }

    /// Writes a head for every node below the subdistrict (a few units have
    /// none); returns how many.
    fn write_heads(&self, w: &mut impl Write, seed: u64) -> io::Result<u64> {
        let mut rng = Rng::new(seed, self.index, Stream::Heads);
        let mut count = 0;
        let mut head = |w: &mut dyn Write, rng: &mut Rng, area: &AreaPath, title: &str| {
            let surname = SURNAMES[rng.weighted(&SURNAME_WEIGHTS)];
            let name = person_name(rng, surname);
            let number = phone(rng);
            count += 1;
            writeln!(w, "{area},{title},{name},{number}")
        };
        for community in &self.communities {
            head(w, &mut rng, &community.path, "社区书记")?;
            for grid in &community.grids {
                head(w, &mut rng, &grid.path, "网格长")?;
                for block in &grid.blocks {
                    head(w, &mut rng, &block.path, block.kind.block_title())?;
                    for unit in &block.units {
                        if !rng.chance(UNIT_WITHOUT_HEAD_PERCENT) {
                            head(w, &mut rng, &unit.path, block.kind.unit_title())?;
                        }
                    }
                }
            }
        }
        Ok(count)
    }

    fn write_sites(&self, w: &mut impl Write, plan: &CityPlan) -> io::Result<()> {
        let width = plan.site_width;
        let mut number = self.first_site;
        for community in &self.communities {
            let name = community.path.leaf();
            for k in 0..community.sites {
                number += 1;
                writeln!(
                    w,
                    "S{number:0width$},{name}第{}采样点,{}",
                    k + 1,
                    community.path
                )?;
            }
        }
        Ok(())
    }
}

/// Gives drafted blocks their paths under `grid`, in name order.
fn place_blocks(grid: &AreaPath, mut drafts: Vec<BlockDraft>) -> Vec<Block> {
    drafts.sort_by(|a, b| a.name.cmp(&b.name));
    drafts
        .into_iter()
        .map(|draft| {
            let path = child(grid, &draft.name);
            let units = draft
                .units
                .into_iter()
                .map(|(unit, ids)| Unit {
                    path: child(&path, &unit),
                    households: ids
                        .into_iter()
                        .map(|id| Household { id, size: 0 })
                        .collect(),
                })
                .collect();
            Block {
                path,
                kind: draft.kind,
                units,
            }
        })
        .collect()
}

/// The blocks of one estate: a compound's buildings with floors, a bungalow
/// area's lane with courtyards, a market's street with shops.
fn expand_estate(rng: &mut Rng, kind: EstateKind, number: u64, households: u64) -> Vec<BlockDraft> {
    match kind {
        EstateKind::Compound => {
            let pool = (COMPOUND_FIRST.len() * COMPOUND_SECOND.len() * COMPOUND_KINDS.len()) as u64;
            let (slot, round) = pooled(number, pool);
            let first = COMPOUND_FIRST[slot % COMPOUND_FIRST.len()];
            let second = COMPOUND_SECOND[slot / COMPOUND_FIRST.len() % COMPOUND_SECOND.len()];
            let suffix = COMPOUND_KINDS[slot / (COMPOUND_FIRST.len() * COMPOUND_SECOND.len())];
            let phase = if round == 0 {
                String::new()
            } else {
                format!("{}期", round + 1)
            };
            let estate = format!("{first}{second}{suffix}{phase}");

            let floors = rng.pick(&FLOORS).min(households);
            let flats = rng.pick(&FLATS_PER_FLOOR);
            let buildings = households.div_ceil(floors * flats);
            // Spread evenly over every floor of every building: each floor
            // gets between 1 and `flats` households.
            let all_floors = buildings * floors;
            let (bw, fw) = (width(buildings), width(floors));
            (0..buildings)
                .map(|b| {
                    let block = format!("{estate}{:0bw$}号楼", b + 1);
                    let units = (0..floors)
                        .map(|f| {
                            let u = b * floors + f;
                            let here =
                                (u + 1) * households / all_floors - u * households / all_floors;
                            let ids = (1..=here)
                                .map(|door| format!("{block}-{}{door:02}", f + 1))
                                .collect();
                            (format!("{:0fw$}层", f + 1), ids)
                        })
                        .collect();
                    BlockDraft {
                        name: block,
                        kind,
                        units,
                    }
                })
                .collect()
        }
        EstateKind::BungalowArea => {
            let pool = (LANE_FIRST.len() * LANE_SECOND.len()) as u64;
            let (slot, round) = pooled(number, pool);
            let lane = format!(
                "{}{}{}巷",
                LANE_FIRST[slot % LANE_FIRST.len()],
                LANE_SECOND[slot / LANE_FIRST.len()],
                round_mark(round)
            );
            let courtyards = households.div_ceil(4).clamp(1, households);
            vec![units_of(rng, lane, kind, households, courtyards, "号院")]
        }
        EstateKind::Market => {
            let (slot, round) = pooled(number, MARKET_NAMES.len() as u64);
            let street = format!("{}商业{}街", MARKET_NAMES[slot], round_mark(round));
            let shops = (households * 3 / 4).clamp(1, households);
            vec![units_of(rng, street, kind, households, shops, "号商铺")]
        }
    }
}

/// A lane or street with `units` courtyards or shops holding `households`.
fn units_of(
    rng: &mut Rng,
    block: String,
    kind: EstateKind,
    households: u64,
    units: u64,
    suffix: &str,
) -> BlockDraft {
    let per_unit = split(households, &jittered(rng, units, 1), 1);
    let uw = width(units);
    let units = per_unit
        .iter()
        .enumerate()
        .map(|(i, &here)| {
            let unit = format!("{:0uw$}{suffix}", i + 1);
            let kw = digits(here);
            let ids = (1..=here)
                .map(|k| format!("{block}{unit}-{k:0kw$}"))
                .collect();
            (unit, ids)
        })
        .collect();
    BlockDraft {
        name: block,
        kind,
        units,
    }
}

// ---------------------------------------------------------------------------
// People.

fn phone(rng: &mut Rng) -> String {
    let second = rng.pick(&[3u8, 5, 8]);
    format!("1{second}{}{:08}", rng.below(10), rng.below(100_000_000))
}

/// A surname and a one- or two-character given name.
fn person_name(rng: &mut Rng, surname: &str) -> String {
    let mut name = String::with_capacity(9);
    name.push_str(surname);
    name.push_str(rng.pick(&GIVEN));
    if rng.chance(70) {
        name.push_str(rng.pick(&GIVEN));
    }
    name
}

/// Hands out ID numbers: for each region, birth day and sex, up to 500
/// sequence numbers (odd for men, as the standard has it), in an order
/// scrambled per day. A full day moves the birth date on by a day, so IDs
/// never repeat.
#[derive(Default)]
struct IdAllocator {
    /// Per region (index from `REGION_FIRST`), per day and sex: numbers used.
    used: Vec<Option<Box<[u16]>>>,
}

impl IdAllocator {
    fn allocate(&mut self, region: u64, mut day: u64, male: bool) -> PersonId {
        let days = birth_days();
        let slot = (region - REGION_FIRST) as usize;
        if self.used.len() <= slot {
            self.used.resize_with(slot + 1, || None);
        }
        let used =
            self.used[slot].get_or_insert_with(|| vec![0; days as usize * 2].into_boxed_slice());
        let k = loop {
            let i = (day * 2 + u64::from(male)) as usize;
            if used[i] < 500 {
                used[i] += 1;
                break u64::from(used[i] - 1);
            }
            day = (day + 1) % days;
        };
        let sequence = (k + mix(&[region, day]) % 500) % 500 * 2 + u64::from(male);
        let born = birth_first() + Duration::days(day as i64);
        let yyyymmdd = u64::from(born.year() as u32) * 10_000
            + u64::from(born.month()) * 100
            + u64::from(born.day());
        PersonId::from_u64(region * 100_000_000_000 + yyyymmdd * 1000 + sequence)
            .expect("generated IDs have a valid birth date")
    }
}

/// Streams one subdistrict's residents, household by household.
struct SubdistrictRows {
    region: u64,
    rng: Rng,
    /// (unit area, household ID, size) in register order.
    households: std::vec::IntoIter<(AreaPath, String, u8)>,
    /// The current household's rows, last first.
    pending: Vec<RegisterRow>,
}

impl SubdistrictRows {
    fn new(sd: Subdistrict, seed: u64) -> SubdistrictRows {
        let mut households = Vec::with_capacity(sd.counts.households as usize);
        for community in sd.communities {
            for grid in community.grids {
                for block in grid.blocks {
                    for unit in block.units {
                        for h in unit.households {
                            households.push((unit.path.clone(), h.id, h.size));
                        }
                    }
                }
            }
        }
        SubdistrictRows {
            region: sd.region,
            rng: Rng::new(seed, sd.index, Stream::People),
            households: households.into_iter(),
            pending: Vec::new(),
        }
    }

    fn next_row(&mut self, ids: &mut IdAllocator) -> Option<RegisterRow> {
        if self.pending.is_empty() {
            let (area, household, size) = self.households.next()?;
            self.fill_household(ids, &area, &household, size);
        }
        self.pending.pop()
    }

    /// A household head, a spouse, children and (in large households) an
    /// elder parent, with plausible ages; sorted by name (then ID) for the
    /// register's order.
    fn fill_household(
        &mut self,
        ids: &mut IdAllocator,
        area: &AreaPath,
        household: &str,
        size: u8,
    ) {
        let rng = &mut self.rng;
        let last_day = birth_days() - 1;
        let head_first = (date(1937, 1, 1) - birth_first()).num_days() as u64;
        let head_last = (date(1997, 12, 31) - birth_first()).num_days() as u64;
        let head_day = rng.between(head_first, head_last);
        let head_male = rng.chance(50);
        let family = SURNAMES[rng.weighted(&SURNAME_WEIGHTS)];
        let head_phone = phone(rng);
        let elder_gap = rng.between(22 * YEAR_DAYS, 32 * YEAR_DAYS);
        for i in 0..size {
            let (day, male, surname) = match i {
                0 => (head_day, head_male, family),
                1 => {
                    let day = (head_day + rng.below(10 * YEAR_DAYS)).saturating_sub(5 * YEAR_DAYS);
                    (
                        day.min(last_day),
                        !head_male,
                        SURNAMES[rng.weighted(&SURNAME_WEIGHTS)],
                    )
                }
                // An elder parent, when the head is young enough to have one.
                i if size >= 5 && i == size - 1 && head_day >= elder_gap => {
                    (head_day - elder_gap, rng.chance(50), family)
                }
                _ => {
                    let mut day = head_day + rng.between(22 * YEAR_DAYS, 40 * YEAR_DAYS);
                    if day > last_day {
                        // Young parents: children spread over the last years.
                        day = rng.between((head_day + 16 * YEAR_DAYS).min(last_day), last_day);
                    }
                    (day, rng.chance(50), family)
                }
            };
            let mut name = person_name(rng, surname);
            while self.pending.iter().any(|r| r.name == name) {
                name = person_name(rng, surname);
            }
            // Children under 14 are registered with the head's phone.
            let number = if i == 0 || day >= minor_from_day() {
                head_phone.clone()
            } else {
                phone(rng)
            };
            self.pending.push(RegisterRow {
                person_id: ids.allocate(self.region, day, male),
                name,
                phone: number,
                area: area.clone(),
                household: household.to_owned(),
            });
        }
        // Popped from the back, so sort in reverse.
        self.pending
            .sort_unstable_by(|a, b| (&b.name, b.person_id).cmp(&(&a.name, a.person_id)));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap, HashSet};
    use std::path::PathBuf;

    use super::*;
    use crate::domain::{parse_heads, parse_register};

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chongwen")
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// A day after every generated birth date, so parsing never reads the clock.
    fn after_births() -> NaiveDate {
        date(2023, 1, 1)
    }

    const FILES: [&str; 3] = ["register.csv", "heads.csv", "sites.csv"];

    #[test]
    fn the_fixture_is_what_seed_one_generates_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(DEFAULT_RESIDENTS, 1, dir.path(), false).unwrap();
        for name in FILES {
            assert!(
                read(dir.path(), name) == read(&fixture_dir(), name),
                "{name} differs from fixtures/chongwen; regenerate with `rollcall gen --out fixtures/chongwen`"
            );
        }
        assert_eq!(summary.residents, DEFAULT_RESIDENTS);
    }

    #[test]
    fn the_fixture_has_the_counts_of_the_design() {
        let register =
            parse_register(&read(&fixture_dir(), "register.csv"), after_births()).unwrap();
        let heads = parse_heads(&read(&fixture_dir(), "heads.csv")).unwrap();

        let prefixes = |depth: usize| -> BTreeSet<String> {
            register
                .iter()
                .map(|r| r.area.segments().take(depth).collect::<Vec<_>>().join("/"))
                .collect()
        };
        let blocks: BTreeSet<String> = register
            .iter()
            .map(|r| r.area.segments().nth(3).unwrap().to_owned())
            .collect();
        let compounds: BTreeSet<&str> = blocks
            .iter()
            .filter_map(|b| b.strip_suffix("号楼"))
            .map(|b| b.trim_end_matches(|c: char| c.is_ascii_digit()))
            .collect();
        let households: HashSet<&str> = register.iter().map(|r| r.household.as_str()).collect();

        assert_eq!(prefixes(1).into_iter().collect::<Vec<_>>(), ["崇文路街道"]);
        assert_eq!(prefixes(2).len(), 7);
        assert!(prefixes(2).contains("崇文路街道/学院社区"));
        assert!(prefixes(3).contains("崇文路街道/学院社区/第03网格"));
        assert_eq!(prefixes(3).len(), 64);
        assert_eq!(compounds.len(), 45);
        assert_eq!(blocks.iter().filter(|b| b.ends_with('巷')).count(), 24);
        assert_eq!(blocks.iter().filter(|b| b.ends_with('街')).count(), 2);
        assert!(register.iter().all(|r| r.area.depth() == 5));
        assert_eq!(households.len(), 15_270);
        assert_eq!(register.len(), 56_717);
        assert!(
            register
                .iter()
                .all(|r| r.person_id.to_string().starts_with("610802"))
        );

        // Every head sits on a node of the register, with the title of its level.
        let nodes: HashSet<String> = (2..=5).flat_map(prefixes).collect();
        let mut titles: HashMap<&str, usize> = HashMap::new();
        for head in &heads {
            assert!(
                nodes.contains(head.area.as_str()),
                "head of unknown area {}",
                head.area
            );
            let leaf = head.area.leaf();
            let expected = match head.area.depth() {
                2 => "社区书记",
                3 => "网格长",
                4 if leaf.ends_with("号楼") => "楼栋长",
                4 if leaf.ends_with('巷') => "巷长",
                4 => "街长",
                _ if leaf.ends_with('层') => "楼层长",
                _ if leaf.ends_with("号院") => "院长",
                _ => "店长",
            };
            assert_eq!(head.title, expected, "{}", head.area);
            *titles.entry(expected).or_default() += 1;
        }
        assert_eq!(titles["社区书记"], 7);
        assert_eq!(titles["网格长"], 64);
        assert_eq!(titles["巷长"], 24);
        assert_eq!(titles["街长"], 2);
        let units = prefixes(5).len();
        let unit_heads = titles["楼层长"] + titles["院长"] + titles["店长"];
        assert!(
            unit_heads < units && unit_heads > units * 9 / 10,
            "{unit_heads} of {units}"
        );

        let sites = read(&fixture_dir(), "sites.csv");
        let mut reader = csv::Reader::from_reader(sites.as_slice());
        assert_eq!(reader.headers().unwrap(), vec!["site_id", "name", "area"]);
        let sites: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(sites.len(), 38);
        assert_eq!(&sites[0][0], "S01");
        assert_eq!(&sites[37][0], "S38");
        let communities = prefixes(2);
        assert!(sites.iter().all(|s| communities.contains(&s[2])));
        let with_sites: BTreeSet<&str> = sites.iter().map(|s| s.get(2).unwrap()).collect();
        assert_eq!(with_sites.len(), 7, "every community has a site");
    }

    #[test]
    fn same_seed_gives_same_bytes_and_another_seed_does_not() {
        let [a, b, c] = [7, 7, 8].map(|seed| {
            let dir = tempfile::tempdir().unwrap();
            generate(3_000, seed, dir.path(), false).unwrap();
            FILES.map(|name| read(dir.path(), name))
        });
        assert!(a == b, "the same seed gave different files");
        assert!(
            a[0] != c[0] && a[1] != c[1],
            "another seed gave the same register or heads"
        );
    }

    #[test]
    fn city_yields_the_rows_of_register_csv_in_order() {
        let dir = tempfile::tempdir().unwrap();
        generate(5_000, 3, dir.path(), false).unwrap();
        let mut bytes = b"person_id,name,phone,area,household\n".to_vec();
        for row in city(5_000, 3) {
            write_register_row(&mut bytes, &row).unwrap();
        }
        assert!(bytes == read(dir.path(), "register.csv"));
    }

    #[test]
    fn every_size_gives_that_many_valid_unique_residents_in_register_order() {
        for n in [1, 2, 7, 10, 99, 1_000, 20_000, 90_000] {
            let rows: Vec<RegisterRow> = city(n, 5).collect();
            assert_eq!(rows.len() as u64, n);
            let ids: HashSet<PersonId> = rows.iter().map(|r| r.person_id).collect();
            assert_eq!(ids.len() as u64, n, "IDs repeat at size {n}");
            for pair in rows.windows(2) {
                let key = |r: &RegisterRow| {
                    (
                        r.area.as_str().to_owned(),
                        r.household.clone(),
                        r.name.clone(),
                    )
                };
                assert!(
                    key(&pair[0]) < key(&pair[1]),
                    "out of order at size {n}: {pair:?}"
                );
            }
            let mut household_area: HashMap<&str, &AreaPath> = HashMap::new();
            for r in &rows {
                assert_eq!(
                    *household_area.entry(&r.household).or_insert(&r.area),
                    &r.area
                );
                let born = r.person_id.birth_date();
                assert!(born >= date(1930, 1, 1) && born <= date(2022, 12, 31));
                assert!(["13", "15", "18"].contains(&&r.phone[..2]) && r.phone.len() == 11);
            }
            let mut bytes = b"person_id,name,phone,area,household\n".to_vec();
            for r in &rows {
                write_register_row(&mut bytes, r).unwrap();
            }
            assert_eq!(parse_register(&bytes, after_births()).unwrap(), rows);
        }
    }

    #[test]
    fn larger_cities_are_several_subdistricts_of_the_default_shape() {
        let plan = CityPlan::new(10_000_000, 1);
        assert_eq!(plan.subdistricts.len(), 176);
        let sum =
            |f: fn(&Counts) -> u64| plan.subdistricts.iter().map(|s| f(&s.counts)).sum::<u64>();
        assert_eq!(sum(|c| c.residents), 10_000_000);
        let (households, grids) = (sum(|c| c.households), sum(|c| c.grids));
        assert!((3.6..3.8).contains(&(10_000_000.0 / households as f64)));
        assert!((850.0..950.0).contains(&(10_000_000.0 / grids as f64)));
        let names: HashSet<&str> = plan.subdistricts.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 176);
        assert!(names.contains("崇文路街道"));
        assert!(plan.subdistricts.windows(2).all(|p| p[0].name < p[1].name));
        assert!(
            plan.subdistricts
                .iter()
                .all(|s| (610_802..=610_899).contains(&s.region))
        );

        let default = Counts::for_residents(DEFAULT_RESIDENTS);
        assert_eq!(
            (
                default.households,
                default.communities,
                default.grids,
                default.sites
            ),
            (15_270, 7, 64, 38)
        );
        assert_eq!(
            (default.compounds, default.bungalow_areas, default.markets),
            (45, 24, 2)
        );
        assert!(CityPlan::new(0, 1).subdistricts.is_empty());
        assert_eq!(city(0, 1).count(), 0);
    }

    #[test]
    fn a_full_birth_day_moves_ids_to_the_next_day() {
        let mut ids = IdAllocator::default();
        let day = (date(1985, 3, 12) - birth_first()).num_days() as u64;
        let got: HashSet<PersonId> = (0..1_200)
            .map(|_| ids.allocate(REGION_FIRST, day, true))
            .collect();
        assert_eq!(got.len(), 1_200);
        let days: BTreeSet<NaiveDate> = got.iter().map(|id| id.birth_date()).collect();
        assert_eq!(
            days.into_iter().collect::<Vec<_>>(),
            [date(1985, 3, 12), date(1985, 3, 13), date(1985, 3, 14)]
        );
        // Men's sequence numbers are odd.
        assert!(got.iter().all(|id| id.as_u64() % 2 == 1));
    }

    #[test]
    fn split_is_exact_and_keeps_the_minimum() {
        assert_eq!(split(10, &[1, 1, 1], 1), [4, 3, 3]);
        assert_eq!(split(3, &[5, 1, 100], 1), [1, 1, 1]);
        assert_eq!(split(100, &[1, 3], 0), [25, 75]);
        let mut rng = Rng::new(1, 0, Stream::Plan);
        for _ in 0..200 {
            let n = rng.between(1, 30);
            let weights: Vec<u64> = (0..n).map(|_| rng.below(1_000)).collect();
            let total = n + rng.below(10_000);
            let parts = split(total, &weights, 1);
            assert_eq!(parts.iter().sum::<u64>(), total);
            assert!(parts.iter().all(|&p| p >= 1));
        }
    }

    #[test]
    fn the_prng_is_pinned_so_fixtures_never_drift() {
        // xoshiro256** seeded by SplitMix64: a change here changes every fixture.
        let mut rng = Rng::new(1, 0, Stream::Plan);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(1, 0, Stream::Plan);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
    }
}
