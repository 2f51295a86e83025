//! Prometheus rule files, read as far as the features need: which series their expressions read,
//! so that a step can check each one against what the services really report.

/// The series names the expressions of a Prometheus rule file read: every identifier of each
/// `expr` that is not a function, an aggregation, a keyword, a label (in `{...}` or a
/// `by (...)` list), an aggregation, a duration (`[5m]`) or a string.
pub fn series_read(rules: &str) -> std::collections::BTreeSet<String> {
    const KEYWORDS: [&str; 11] =
        ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"];
    const AGGREGATIONS: [&str; 12] =
        ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
    let mut expressions = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(expression) = line.trim_start().strip_prefix("expr:") else { continue };
        if expression.trim() == "|" {
            let indent = line.len() - line.trim_start().len();
            let mut block = String::new();
            while let Some(next) = lines.peek().filter(|next| next.len() - next.trim_start().len() > indent) {
                block.push_str(next);
                block.push('\n');
                lines.next();
            }
            expressions.push(block);
        } else {
            expressions.push(expression.to_owned());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for expression in expressions {
        let characters: Vec<char> = expression.chars().collect();
        let mut index = 0;
        let mut skip_group = false;
        while index < characters.len() {
            let character = characters[index];
            let closing = match character {
                '{' => Some('}'),
                '[' => Some(']'),
                '"' => Some('"'),
                '(' if skip_group => Some(')'),
                _ => None,
            };
            if let Some(closing) = closing {
                skip_group = false;
                index += characters[index + 1..].iter().position(|next| *next == closing).map_or(characters.len(), |at| at + 2);
                continue;
            }
            if character.is_ascii_alphabetic() || character == '_' || character == ':' {
                let start = index;
                while index < characters.len()
                    && (characters[index].is_ascii_alphanumeric() || characters[index] == '_' || characters[index] == ':')
                {
                    index += 1;
                }
                let word: String = characters[start..index].iter().collect();
                let next = characters[index..].iter().find(|next| !next.is_whitespace());
                // An aggregation may put its grouping before its parenthesis: `sum by (job) (...)`.
                let aggregation = AGGREGATIONS.contains(&word.as_str());
                if KEYWORDS.contains(&word.as_str()) {
                    skip_group = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
                } else if next != Some(&'(') && !aggregation {
                    names.insert(word);
                }
                continue;
            }
            index += 1;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::series_read;

    #[test]
    fn the_series_an_expression_reads_are_told_from_its_functions_labels_and_keywords() {
        let rules = r#"
groups:
  - name: shop
    rules:
      - alert: A
        expr: sum by (vhost, queue) (rabbitmq_queue_messages{queue=~".+\\.dead_letter"}) > 0
      - alert: B
        expr: |
          sum(increase(orders_cancelled_total{reason="product_unavailable"}[15m]))
            / clamp_min(sum(increase(orders_placed_total[15m])), 1) > 0.05
        labels:
          severity: warning
      - alert: C
        expr: histogram_quantile(0.99, sum by (le) (rate(order_accepted_to_paid_seconds_bucket[5m]))) > 10
      - alert: D
        expr: up == 0
"#;
        let names: Vec<String> = series_read(rules).into_iter().collect();
        assert_eq!(
            names,
            [
                "order_accepted_to_paid_seconds_bucket",
                "orders_cancelled_total",
                "orders_placed_total",
                "rabbitmq_queue_messages",
                "up"
            ]
        );
    }
}
