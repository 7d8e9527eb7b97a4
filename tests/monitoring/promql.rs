//! Just enough PromQL lexing to list the metric names, label names and functions a query
//! uses, so a test can hold dashboards and rules to the crate's metric catalogue.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Op(String),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&ch) = b.get(i) else {
                    return Err(format!("unterminated string in {expr}"));
                };
                if ch as char == c {
                    i += 1;
                    break;
                }
                if ch == b'\\' && c != '`' {
                    s.push(b[i + 1] as char);
                    i += 2;
                    continue;
                }
                s.push(ch as char);
                i += 1;
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // numbers and durations (5m, 1h30m, 1e-9, 0x1f)
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len()
                && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
            {
                i += 1;
            }
            out.push(Tok::Ident(expr[start..i].to_string()));
        } else {
            let two = expr.get(i..i + 2).unwrap_or("");
            if ["!=", "=~", "!~", "==", ">=", "<="].contains(&two) {
                out.push(Tok::Op(two.to_string()));
                i += 2;
            } else {
                out.push(Tok::Op(c.to_string()));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Keywords that are not names, besides the [`GROUPING`] ones.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan", "Inf", "NaN",
];
/// PromQL aggregation operators.
pub const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Functions Prometheus 2.42 knows (promql/functions.go at v2.42.0), plus aggregations.
pub const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// What one query names.
#[derive(Debug, Default)]
pub struct Names {
    pub metrics: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub functions: BTreeSet<String>,
    /// Labels the query itself creates (label_replace / label_join destination, count_values).
    pub derived: BTreeSet<String>,
    /// Labels named in `by (...)`: all an aggregated result can keep.
    pub by: BTreeSet<String>,
}

impl Names {
    pub fn aggregates(&self) -> bool {
        self.functions
            .iter()
            .any(|f| AGGREGATIONS.contains(&f.as_str()))
    }
}

pub fn names(expr: &str) -> Result<Names, String> {
    let toks = lex(expr)?;
    let mut n = Names::default();
    let mut i = 0;
    let mut in_braces = false;
    while i < toks.len() {
        match &toks[i] {
            Tok::Op(o) if o == "{" => in_braces = true,
            Tok::Op(o) if o == "}" => in_braces = false,
            Tok::Ident(id) if in_braces => {
                n.labels.insert(id.clone());
            }
            Tok::Ident(id)
                if GROUPING.contains(&id.as_str())
                    && toks.get(i + 1) == Some(&Tok::Op("(".into())) =>
            {
                let mut j = i + 2;
                while j < toks.len() && toks[j] != Tok::Op(")".into()) {
                    if let Tok::Ident(l) = &toks[j] {
                        n.labels.insert(l.clone());
                        if id == "by" {
                            n.by.insert(l.clone());
                        }
                    }
                    j += 1;
                }
                i = j;
            }
            Tok::Ident(id)
                if KEYWORDS.contains(&id.as_str()) || GROUPING.contains(&id.as_str()) => {}
            Tok::Ident(id)
                if AGGREGATIONS.contains(&id.as_str())
                    && toks.get(i + 1) != Some(&Tok::Op("(".into())) =>
            {
                n.functions.insert(id.clone());
            }
            Tok::Ident(id) if toks.get(i + 1) == Some(&Tok::Op("(".into())) => {
                n.functions.insert(id.clone());
                let args = string_args(&toks, i + 1);
                match id.as_str() {
                    "label_replace" => {
                        if let Some(Some(dst)) = args.get(1) {
                            n.derived.insert(dst.clone());
                        }
                        if let Some(Some(src)) = args.get(3) {
                            n.labels.insert(src.clone());
                        }
                    }
                    "label_join" => {
                        if let Some(Some(dst)) = args.get(1) {
                            n.derived.insert(dst.clone());
                        }
                        for src in args.iter().skip(3).flatten() {
                            n.labels.insert(src.clone());
                        }
                    }
                    "count_values" => {
                        if let Some(Some(dst)) = args.first() {
                            n.derived.insert(dst.clone());
                        }
                    }
                    _ => {}
                }
            }
            Tok::Ident(id) => {
                n.metrics.insert(id.clone());
            }
            _ => {}
        }
        i += 1;
    }
    Ok(n)
}

/// For the call whose `(` is at `open`: each top-level argument that is a lone string.
fn string_args(toks: &[Tok], open: usize) -> Vec<Option<String>> {
    let mut args = vec![Vec::new()];
    let mut depth = 0;
    for t in &toks[open..] {
        match t {
            Tok::Op(o) if o == "(" || o == "{" || o == "[" => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            Tok::Op(o) if o == ")" || o == "}" || o == "]" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Op(o) if o == "," && depth == 1 => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(t.clone());
    }
    args.into_iter()
        .map(|a| match a.as_slice() {
            [Tok::Str(s)] => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Labels a legend format such as `{{job}} {{http_route}}` refers to.
pub fn legend_labels(legend: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = legend;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + end].trim().to_string());
        rest = &rest[start + end + 2..];
    }
    out
}
