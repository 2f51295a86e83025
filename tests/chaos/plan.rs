//! The plan: every operation and every fault of a run, with its target and length, drawn from the
//! seed alone before anything runs (the same seed draws the same plan, whose digest is printed).

use std::time::Duration;

use shop_testkit::system::{Instance, ServiceName};

use crate::{CONCURRENT_FAULTS, PRODUCTS};

/// SplitMix64: a few lines, and the same numbers from the same seed on every machine.
pub struct Random(u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `range` (inclusive).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The instance's database connections reset and new ones refused.
    DatabaseDown,
    /// The instance's broker connections reset and new ones refused.
    BrokerDown,
    /// The instance's broker connections hang (mid-publish, mid-confirm), then reset when healed.
    BrokerHangsThenResets,
    /// The instance killed where it stands, started again when healed.
    Killed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Register,
    /// Lines of (product, quantity), for the customer drawn by `customer` (modulo how many exist),
    /// sent with an `Idempotency-Key` and retried with it (see [`ORDER_TRIES`]). With
    /// `hang_up_after_ms`, the first try's client hangs up that many milliseconds in, as a client
    /// that timed out, and then retries.
    Order {
        customer: u64,
        lines: Vec<(usize, i64)>,
        hang_up_after_ms: Option<u64>,
    },
    /// Cancels one of the customer's orders (drawn by `pick`, modulo how many it has).
    Cancel {
        customer: u64,
        pick: u64,
    },
    /// Asks for a refund of one of the customer's orders.
    Refund {
        customer: u64,
        pick: u64,
    },
    Fault {
        kind: FaultKind,
        instance: Instance,
    },
    Heal {
        instance: Instance,
    },
    /// A message no consumer can decode, published to `order_created`.
    Poison,
}

pub struct Step {
    pub operation: Operation,
    /// Think time after the operation.
    pub pause: Duration,
}

/// The whole run, drawn from the seed before anything starts.
pub struct Plan {
    pub initial_stock: Vec<i64>,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn draw(seed: u64, operations: usize) -> Self {
        let mut random = Random(seed);
        let initial_stock = (0..PRODUCTS).map(|_| random.between(10, 40) as i64).collect();
        let targets: Vec<Instance> = [ServiceName::Order, ServiceName::Inventory]
            .into_iter()
            .flat_map(|service| (1..=2).map(move |replica| Instance { service, replica }))
            .collect();
        // Faults in effect: the instance and the operation at which it is healed.
        let mut active: Vec<(Instance, usize)> = Vec::new();
        let mut steps = Vec::new();
        for index in 0..operations {
            active.retain(|(instance, heal_at)| {
                if *heal_at > index {
                    return true;
                }
                steps.push(Step { operation: Operation::Heal { instance: *instance }, pause: Duration::ZERO });
                false
            });
            let roll = random.next() % 100;
            let operation = match roll {
                0..=4 => Operation::Register,
                5..=59 => {
                    let line_count = random.between(1, 3) as usize;
                    let mut lines: Vec<(usize, i64)> = Vec::new();
                    for _ in 0..line_count {
                        let product = (random.next() % PRODUCTS as u64) as usize;
                        if !lines.iter().any(|(chosen, _)| *chosen == product) {
                            lines.push((product, random.between(1, 3) as i64));
                        }
                    }
                    // One order in four hangs up on its first try, 1 to 8 ms in (an order is answered in a few milliseconds).
                    let hang_up_after_ms = (random.next() % 4 == 0).then(|| random.between(1, 8));
                    Operation::Order { customer: random.next(), lines, hang_up_after_ms }
                }
                60..=71 => Operation::Cancel { customer: random.next(), pick: random.next() },
                72..=79 => Operation::Refund { customer: random.next(), pick: random.next() },
                80..=81 => Operation::Poison,
                _ => {
                    let free: Vec<Instance> =
                        targets.iter().copied().filter(|target| !active.iter().any(|(busy, _)| busy == target)).collect();
                    if active.len() >= CONCURRENT_FAULTS || free.is_empty() {
                        Operation::Register
                    } else {
                        let instance = free[(random.next() % free.len() as u64) as usize];
                        let kind = match random.next() % 4 {
                            0 => FaultKind::DatabaseDown,
                            1 => FaultKind::BrokerDown,
                            2 => FaultKind::BrokerHangsThenResets,
                            _ => FaultKind::Killed,
                        };
                        active.push((instance, index + random.between(10, 60) as usize));
                        Operation::Fault { kind, instance }
                    }
                }
            };
            steps.push(Step { operation, pause: Duration::from_millis(random.between(0, 80)) });
        }
        for (instance, _) in active {
            steps.push(Step { operation: Operation::Heal { instance }, pause: Duration::ZERO });
        }
        Self { initial_stock, steps }
    }

    /// A short fingerprint of the plan, to see that two runs of one seed drew the same one.
    pub fn digest(&self) -> u64 {
        let text = format!(
            "{:?}{:?}",
            self.initial_stock,
            self.steps.iter().map(|step| (&step.operation, step.pause)).collect::<Vec<_>>()
        );
        // FNV-1a.
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
    }
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Order { lines, .. } if lines.len() == 1 => "order one product",
            Operation::Order { .. } => "order several products",
            Operation::Cancel { .. } => "cancel",
            Operation::Refund { .. } => "refund",
            Operation::Fault { .. } => "fault",
            Operation::Heal { .. } => "heal",
            Operation::Poison => "poison message",
        }
    }
}
