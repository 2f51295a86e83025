//! The plan: every operation with its target, and every fault with its kind, target and length,
//! drawn from the seed alone before anything runs. Two draws of one seed are equal (a unit test
//! below says so), whatever the shop answers during the run: an operation names its target by the
//! plan's own numbering (customer 3, order request 17, product 2), never by what an earlier answer
//! returned. What an answer changes is only whether an operation applies (a cancel of an order
//! request that never got its 201 is skipped, and counted).
//!
//! Faults run on lanes of their own, beside the customers: one lane for the servers (PostgreSQL,
//! RabbitMQ, the MongoDB-wire server), one for the order replicas and one for the inventory
//! replicas, so at most three faults are in effect at once and no two on one target. Each lane
//! goes through every fault kind against every target it owns, in an order drawn from the seed,
//! once per cycle; a run has at least one cycle, so every kind meets every target in every run,
//! the short one in CI included. Lengths are times, each at least [`shortest_fault`].

use std::time::Duration;

use shop_testkit::base::own_servers::ServerKind;
use shop_testkit::system::{Instance, ServiceName};

use crate::{ALWAYS_IN_STOCK, FIRST_CUSTOMERS, PRODUCTS};

/// SplitMix64: a few lines, and the same numbers from the same seed on every machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// One of `count` things.
    pub fn pick(&mut self, count: usize) -> usize {
        (self.next_u64() % count as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            items.swap(index, self.pick(index + 1));
        }
    }
}

/// What a fault does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The server stopped the way its operator stops it (SIGTERM), started again when healed.
    ServerStopped,
    /// The server's process killed with SIGKILL, started again on the same data when healed.
    ServerKilled,
    /// The replica dies as a process does: everything it was doing dropped, its port refusing
    /// connections; started again when healed.
    ReplicaKilled,
    /// The replica's database connections reset, new ones closed.
    DatabaseCut,
    /// The replica's database connections hang: nothing goes through, nothing is closed.
    DatabaseHang,
    /// Every byte between the replica and its database delayed.
    DatabaseSlow,
    /// The replica's broker connections reset, new ones closed.
    BrokerCut,
    /// The replica's broker connections hang (mid-publish, mid-confirm, mid-delivery).
    BrokerHang,
}

impl FaultKind {
    pub const ON_SERVERS: [FaultKind; 2] = [FaultKind::ServerStopped, FaultKind::ServerKilled];
    pub const ON_REPLICAS: [FaultKind; 6] = [
        FaultKind::ReplicaKilled,
        FaultKind::DatabaseCut,
        FaultKind::DatabaseHang,
        FaultKind::DatabaseSlow,
        FaultKind::BrokerCut,
        FaultKind::BrokerHang,
    ];
}

/// What a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Server(ServerKind),
    Replica(Instance),
}

impl std::fmt::Display for Target {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Server(ServerKind::Postgres) => write!(formatter, "PostgreSQL"),
            Target::Server(ServerKind::RabbitMq) => write!(formatter, "RabbitMQ"),
            Target::Server(ServerKind::MongoDb) => write!(formatter, "MongoDB-wire server"),
            Target::Replica(instance) => write!(formatter, "{instance}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub kind: FaultKind,
    pub target: Target,
    /// How long the fault stays in effect once verified.
    pub length: Duration,
    /// The lane's quiet time before the fault (after the previous one was healed).
    pub quiet_before: Duration,
}

/// A lane: faults one after the other, each healed (and the heal verified) before the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub name: &'static str,
    pub faults: Vec<PlannedFault>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A new customer registers, logs in and gives an address: customer number `customers so far`.
    Register,
    /// Order request number `orders so far`: lines of (product, quantity) for `customer`, sent
    /// with an `Idempotency-Key` and retried with it (see [`crate::ORDER_TRIES`]). With
    /// `hang_up_after_ms`, the first try's client hangs up that many milliseconds in, as a client
    /// that timed out, and then retries.
    Order {
        customer: usize,
        lines: Vec<(usize, i64)>,
        hang_up_after_ms: Option<u64>,
    },
    /// The customer of order request `request` cancels it.
    Cancel {
        request: usize,
    },
    /// Staff ship, deliver or refund the order of `request`.
    Ship {
        request: usize,
    },
    Deliver {
        request: usize,
    },
    Refund {
        request: usize,
    },
    /// The customer of `request` looks at the order (an idempotent GET of the order service).
    LookUpOrder {
        request: usize,
    },
    /// A customer looks at a product's stock (an idempotent GET of the inventory service).
    LookUpStock {
        product: usize,
    },
    /// Poison message number `number`, which no consumer can decode, published to `order_created`.
    Poison {
        number: usize,
    },
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Order { lines, .. } if lines.len() == 1 => "order one product",
            Operation::Order { .. } => "order several products",
            Operation::Cancel { .. } => "cancel",
            Operation::Ship { .. } => "ship",
            Operation::Deliver { .. } => "deliver",
            Operation::Refund { .. } => "refund",
            Operation::LookUpOrder { .. } => "look up an order",
            Operation::LookUpStock { .. } => "look up stock",
            Operation::Poison { .. } => "poison message",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub operation: Operation,
    /// Think time after the operation.
    pub pause: Duration,
}

/// The whole run, drawn from the seed before anything starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub initial_stock: Vec<i64>,
    /// The operations the run was asked for; [`Plan::step`] draws further ones the same way while
    /// a fault lane has not finished.
    pub steps: Vec<Step>,
    pub lanes: Vec<Lane>,
    /// Where the drawing of operations stands, to draw further ones.
    operations: OperationDraw,
}

/// Operations per cycle of faults: a run of 1,000 operations goes through every fault kind
/// against every target five times.
pub const OPERATIONS_PER_CYCLE: usize = 200;

/// The retry budget of a consumer: how long a message that keeps failing with an error that is
/// not an outage is retried before it is dead-lettered (every backoff of its attempts). A fault
/// shorter than this could hide a failure misread as a bug instead of an outage.
pub fn retry_budget() -> Duration {
    let settings = common::messaging::ConsumerSettings::new("chaos");
    (0..settings.max_attempts.saturating_sub(1)).map(|attempt| settings.retry_backoff * 2u32.pow(attempt)).sum()
}

/// No fault is shorter than twice the retry budget, nor than twice the longest timeout the
/// services put on a dependency (MongoDB's server selection, PostgreSQL's pool acquire: 5 s), so
/// that a hang outlasts the services' own timeouts and they fire.
pub fn shortest_fault() -> Duration {
    let longest_timeout = common::config::MONGODB_SERVER_SELECTION_TIMEOUT.max(Duration::from_secs(5));
    (retry_budget() * 2).max(longest_timeout * 2)
}

impl Plan {
    pub fn draw(seed: u64, operations: usize) -> Self {
        let mut random = Random::new(seed);
        let initial_stock = (0..PRODUCTS)
            .map(|product| if product < ALWAYS_IN_STOCK { 1_000_000 } else { random.between(10, 40) as i64 })
            .collect();
        let cycles = operations.div_ceil(OPERATIONS_PER_CYCLE).max(1);
        let lanes = draw_lanes(&mut random, cycles);
        // Operations draw from a generator of their own, so that drawing more of them later
        // (while a lane is still busy) gives the same operations as drawing them all at first.
        let mut draw = OperationDraw::new(Random::new(random.next_u64()));
        let steps = (0..operations).map(|_| draw.next_step()).collect();
        Self { initial_stock, steps, lanes, operations: draw }
    }

    /// Operation `index` of the run: one of the planned ones, or a further one drawn the same way.
    pub fn step(&mut self, index: usize) -> Step {
        while self.steps.len() <= index {
            let step = self.operations.next_step();
            self.steps.push(step);
        }
        self.steps[index].clone()
    }

    /// A short fingerprint of the plan, to see that two runs of one seed drew the same one.
    pub fn digest(&self) -> u64 {
        let text = format!("{:?}{:?}{:?}", self.initial_stock, self.steps, self.lanes);
        // FNV-1a.
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Every (kind, target) the plan's lanes hold.
    pub fn coverage(&self) -> Vec<(FaultKind, Target)> {
        let mut covered: Vec<(FaultKind, Target)> =
            self.lanes.iter().flat_map(|lane| lane.faults.iter().map(|fault| (fault.kind, fault.target))).collect();
        covered.sort();
        covered.dedup();
        covered
    }
}

/// Every kind against every target, for the three lanes, shuffled per cycle.
fn draw_lanes(random: &mut Random, cycles: usize) -> Vec<Lane> {
    let replicas =
        |service: ServiceName| -> Vec<Target> { (1..=2).map(|replica| Target::Replica(Instance { service, replica })).collect() };
    let lanes: [(&'static str, Vec<Target>, &[FaultKind]); 3] = [
        (
            "servers",
            vec![Target::Server(ServerKind::Postgres), Target::Server(ServerKind::RabbitMq), Target::Server(ServerKind::MongoDb)],
            &FaultKind::ON_SERVERS,
        ),
        ("order replicas", replicas(ServiceName::Order), &FaultKind::ON_REPLICAS),
        ("inventory replicas", replicas(ServiceName::Inventory), &FaultKind::ON_REPLICAS),
    ];
    let shortest = shortest_fault().as_millis() as u64;
    lanes
        .into_iter()
        .map(|(name, targets, kinds)| {
            let mut faults = Vec::new();
            for _ in 0..cycles {
                let mut cycle: Vec<(FaultKind, Target)> =
                    targets.iter().flat_map(|target| kinds.iter().map(move |kind| (*kind, *target))).collect();
                random.shuffle(&mut cycle);
                for (kind, target) in cycle {
                    faults.push(PlannedFault {
                        kind,
                        target,
                        length: Duration::from_millis(random.between(shortest, shortest + shortest / 2)),
                        quiet_before: Duration::from_millis(random.between(500, 4_000)),
                    });
                }
            }
            Lane { name, faults }
        })
        .collect()
}

/// Draws operations one after another, keeping count of what they name.
#[derive(Debug, Clone, PartialEq)]
struct OperationDraw {
    random: Random,
    customers: usize,
    order_requests: usize,
    /// Order requests a `Ship` named, for refunds of shipped orders.
    shipped: Vec<usize>,
    poison: usize,
}

impl OperationDraw {
    fn new(random: Random) -> Self {
        Self { random, customers: FIRST_CUSTOMERS, order_requests: 0, shipped: Vec::new(), poison: 0 }
    }

    fn next_step(&mut self) -> Step {
        let random = &mut self.random;
        let earlier_request = |random: &mut Random, requests: usize| -> Option<usize> {
            // Mostly recent orders, as customers and staff act on what is fresh.
            (requests > 0).then(|| requests - 1 - random.pick(requests.min(40)))
        };
        let roll = random.next_u64() % 100;
        let operation = match roll {
            0..=3 => {
                self.customers += 1;
                Some(Operation::Register)
            }
            4..=53 => {
                let line_count = random.between(1, 3) as usize;
                let mut lines: Vec<(usize, i64)> = Vec::new();
                for _ in 0..line_count {
                    let product = random.pick(PRODUCTS);
                    if !lines.iter().any(|(chosen, _)| *chosen == product) {
                        lines.push((product, random.between(1, 3) as i64));
                    }
                }
                // One order in four hangs up on its first try, 1 to 8 ms in (an order is answered
                // in a few milliseconds).
                let hang_up_after_ms = random.next_u64().is_multiple_of(4).then(|| random.between(1, 8));
                let customer = random.pick(self.customers);
                self.order_requests += 1;
                Some(Operation::Order { customer, lines, hang_up_after_ms })
            }
            54..=61 => earlier_request(random, self.order_requests).map(|request| Operation::Cancel { request }),
            62..=69 => earlier_request(random, self.order_requests).map(|request| {
                self.shipped.push(request);
                Operation::Ship { request }
            }),
            70..=73 => (!self.shipped.is_empty())
                .then(|| self.shipped[self.shipped.len() - 1 - random.pick(self.shipped.len().min(20))])
                .map(|request| Operation::Deliver { request }),
            74..=79 => {
                // Half the refunds are of orders staff shipped.
                if random.next_u64().is_multiple_of(2) && !self.shipped.is_empty() {
                    let request = self.shipped[self.shipped.len() - 1 - random.pick(self.shipped.len().min(20))];
                    Some(Operation::Refund { request })
                } else {
                    earlier_request(random, self.order_requests).map(|request| Operation::Refund { request })
                }
            }
            80..=88 => earlier_request(random, self.order_requests).map(|request| Operation::LookUpOrder { request }),
            89..=97 => Some(Operation::LookUpStock { product: random.pick(PRODUCTS) }),
            _ => {
                self.poison += 1;
                Some(Operation::Poison { number: self.poison })
            }
        };
        // Before the first order, what needs one is a look at stock instead.
        let operation = operation.unwrap_or_else(|| Operation::LookUpStock { product: random.pick(PRODUCTS) });
        Step { operation, pause: Duration::from_millis(random.between(100, 1_400)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_draws_of_one_seed_are_equal_and_other_seeds_differ() {
        let mut first = Plan::draw(7, 300);
        let mut second = Plan::draw(7, 300);
        assert_eq!(first, second);
        assert_eq!(first.digest(), second.digest());
        // Further operations, drawn while a lane is busy, are the same too, and the same as a
        // longer plan's.
        let longer = Plan::draw(7, 400);
        for index in 300..400 {
            assert_eq!(first.step(index), second.step(index));
            assert_eq!(first.step(index), longer.steps[index]);
        }
        assert_ne!(Plan::draw(8, 300).digest(), Plan::draw(7, 300).digest());
    }

    #[test]
    fn every_fault_kind_meets_every_target_even_in_the_shortest_run() {
        for seed in 0..50 {
            let plan = Plan::draw(seed, 1);
            let servers = 3 * FaultKind::ON_SERVERS.len();
            let replicas = 4 * FaultKind::ON_REPLICAS.len();
            assert_eq!(plan.coverage().len(), servers + replicas, "seed {seed}");
            for lane in &plan.lanes {
                assert!(lane.faults.iter().all(|fault| fault.length >= shortest_fault()), "seed {seed}");
            }
        }
    }

    #[test]
    fn faults_outlast_the_retry_budget_twice() {
        assert!(retry_budget() >= Duration::from_secs(1), "{:?}", retry_budget());
        assert!(shortest_fault() >= retry_budget() * 2);
        assert!(shortest_fault() >= Duration::from_secs(10));
    }

    #[test]
    fn operations_name_only_what_exists_when_they_run() {
        let plan = Plan::draw(11, 2_000);
        let (mut customers, mut requests) = (FIRST_CUSTOMERS, 0);
        for step in &plan.steps {
            match &step.operation {
                Operation::Register => customers += 1,
                Operation::Order { customer, lines, .. } => {
                    assert!(*customer < customers);
                    assert!(!lines.is_empty() && lines.iter().all(|(product, _)| *product < PRODUCTS));
                    requests += 1;
                }
                Operation::Cancel { request }
                | Operation::Ship { request }
                | Operation::Deliver { request }
                | Operation::Refund { request }
                | Operation::LookUpOrder { request } => assert!(*request < requests),
                Operation::LookUpStock { product } => assert!(*product < PRODUCTS),
                Operation::Poison { .. } => {}
            }
        }
        assert!(requests > 800, "{requests} order requests in 2,000 operations");
    }
}
