//! What a `promtool test rules` file feeds Prometheus: input series in promtool's notation
//! (`metric{a="b"}` and values like `0+10x40 _x5 3`), read back so tests can reason about the
//! traffic each unit test carries.

use std::collections::BTreeMap;

/// One input series of a unit test.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// One entry per evaluation step; `None` where promtool's `_` leaves a gap.
    pub values: Vec<Option<f64>>,
}

impl Series {
    pub fn parse(series: &str, values: &str) -> Result<Series, String> {
        let (name, labels) = parse_selector(series)?;
        Ok(Series {
            name,
            labels,
            values: expand_values(values)?,
        })
    }

    /// Average increase per second between the first and last sample: a counter's rate.
    pub fn per_second(&self, step_seconds: f64) -> f64 {
        let defined: Vec<(usize, f64)> = self
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        match (defined.first(), defined.last()) {
            (Some(&(i0, v0)), Some(&(i1, v1))) if i1 > i0 => {
                (v1 - v0) / ((i1 - i0) as f64 * step_seconds)
            }
            _ => 0.0,
        }
    }
}

/// `metric{a="b",c="d"}` into its name and labels (values may hold `,`, `{` and `}`).
pub fn parse_selector(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, "}"),
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            Some('}') => break,
            None => return Err(format!("unterminated selector {text:?}")),
            _ => {}
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return Err(format!(
                "label {key:?} is not followed by a quoted value in {text:?}"
            ));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated label value in {text:?}")),
            }
        }
        labels.insert(key.trim().to_string(), value);
    }
    Ok((name.trim().to_string(), labels))
}

/// promtool's expanding notation: `a+bxn` (n+1 samples from a, step b), `a-bxn`, `axn`
/// (a, n+1 times), `_` (a gap), `_xn` (n gaps), `stale`, or a plain number.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" || token == "stale" {
            out.push(None);
            continue;
        }
        if let Some(n) = token.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|e| format!("{token}: {e}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let Some((head, times)) = token.split_once('x') else {
            out.push(Some(token.parse().map_err(|e| format!("{token}: {e}"))?));
            continue;
        };
        let n: usize = times.parse().map_err(|e| format!("{token}: {e}"))?;
        // The start may be negative: find the step's sign after the first character.
        let (start, step) = match head[1..].find(['+', '-']) {
            Some(at) => {
                let (a, b) = head.split_at(at + 1);
                let step: f64 = b[1..].parse().map_err(|e| format!("{token}: {e}"))?;
                (a, if b.starts_with('-') { -step } else { step })
            }
            None => (head, 0.0),
        };
        let start: f64 = start.parse().map_err(|e| format!("{token}: {e}"))?;
        out.extend((0..=n).map(|i| Some(start + step * i as f64)));
    }
    Ok(out)
}

/// A Prometheus duration with one unit (`30s`, `15m`, `2h`, `3d`, `1w`) in seconds.
pub fn seconds(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("no unit in duration {text:?}"))?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().map_err(|e| format!("{text}: {e}"))?;
    let unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 604800.0,
        _ => return Err(format!("unsupported duration {text:?}")),
    };
    Ok(n * unit)
}

/// A number as PromQL writes it in a rule (`0.5`, `1/60`).
pub fn number(text: &str) -> Result<f64, String> {
    let text = text.trim();
    match text.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|e| format!("{text}: {e}"))?;
            let b: f64 = b.trim().parse().map_err(|e| format!("{text}: {e}"))?;
            Ok(a / b)
        }
        None => text.parse().map_err(|e| format!("{text}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_promtool_notation() {
        assert_eq!(
            expand_values("0+10x2 _x2 5 -1-1x1").unwrap(),
            vec![
                Some(0.0),
                Some(10.0),
                Some(20.0),
                None,
                None,
                Some(5.0),
                Some(-1.0),
                Some(-2.0)
            ]
        );
        let (name, labels) = parse_selector(r#"x_count{a="b",route="/u/{id}",c="d,e"}"#).unwrap();
        assert_eq!(name, "x_count");
        assert_eq!(labels["route"], "/u/{id}");
        assert_eq!(labels["c"], "d,e");
        let s = Series::parse("up", "1x10").unwrap();
        assert_eq!(s.per_second(60.0), 0.0);
        assert_eq!(Series::parse("c", "0+60x10").unwrap().per_second(60.0), 1.0);
        assert_eq!(number("1/60").unwrap(), 1.0 / 60.0);
        assert_eq!(seconds("3h").unwrap(), 10800.0);
    }
}
