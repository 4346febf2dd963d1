//! benchchart: draws the benchmark's throughput (the tables `cargo bench --bench load` prints, as
//! scripts/bench.sh saves them) as an SVG chart: messages per second against clients, hatchat
//! beside pgbench's INSERT of the same rows in the same run. Also writes the figures as CSV.
//!
//!   benchchart BENCH.md OUT.svg [OUT.csv]
//!
//! Tables are found by their column names (`spread: gateway`, `spread: send_message`), so the
//! README's copy of a run's tables draws as well as the bench's own output.

use plotters::prelude::*;
use std::error::Error;
use std::fmt::Write as _;

/// One line of the chart: its name, colour and (clients, messages/s) points.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A markdown table: its header cells and its rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The first table of `text` whose header has a column named `marker`.
    fn find(text: &str, marker: &str) -> Option<Table> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let start = lines.iter().position(|l| l.starts_with('|') && cells(l).iter().any(|c| c == marker))?;
        let rows = lines[start + 2..].iter().take_while(|l| l.starts_with('|')).map(|l| cells(l)).collect();
        Some(Table { header: cells(lines[start]), rows })
    }

    /// (clients, value) for each row with a number in column `name`.
    fn column(&self, name: &str) -> Vec<(f64, f64)> {
        let (Some(x), Some(y)) = (self.index("clients"), self.index(name)) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter_map(|row| Some((row.get(x)?.parse().ok()?, row.get(y)?.parse().ok()?)))
            .collect()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }
}

fn cells(line: &str) -> Vec<String> {
    line.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

/// The series to draw: the gateway table's, then plain SQL's when the run had it.
fn series(text: &str) -> Result<Vec<Series>, String> {
    let gateway = Table::find(text, "spread: gateway").ok_or("no table with a `spread: gateway` column")?;
    let mut all = vec![
        Series {
            name: "hatchat gateway, a channel per client",
            color: RGBColor(0x1f, 0x77, 0xb4),
            points: gateway.column("spread: gateway"),
        },
        Series {
            name: "hatchat gateway, one hot channel",
            color: RGBColor(0xff, 0x7f, 0x0e),
            points: gateway.column("hot channel: gateway"),
        },
        Series {
            name: "pgbench INSERT (same rows, same run)",
            color: RGBColor(0x55, 0x55, 0x55),
            points: gateway.column("pgbench INSERT"),
        },
    ];
    if let Some(sql) = Table::find(text, "spread: send_message") {
        all.push(Series {
            name: "plain SQL hatchat.send_message",
            color: RGBColor(0x2c, 0xa0, 0x2c),
            points: sql.column("spread: send_message"),
        });
    }
    all.retain(|s| !s.points.is_empty());
    Ok(all)
}

fn csv(series: &[Series]) -> String {
    let mut out = String::from("series,clients,messages_per_second\n");
    for s in series {
        for (clients, rate) in &s.points {
            let _ = writeln!(out, "\"{}\",{clients},{rate}", s.name);
        }
    }
    out
}

/// Clients on a log2 axis (1, 4, 16, 64 evenly apart), messages/s from 0.
fn draw(series: &[Series], path: &str) -> Result<(), Box<dyn Error>> {
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0.log2()));
    let (x_min, x_max) = (xs().fold(f64::INFINITY, f64::min), xs().fold(0.0, f64::max));
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (860, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Send throughput against clients (messages/s)", ("sans-serif", 22))
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min - 0.3)..(x_max + 0.3), 0.0..y_max.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("clients (each sends, waits for the answer, sends again)")
        .y_desc("messages/s")
        .x_labels((x_max - x_min) as usize + 1)
        .x_label_formatter(&|x| format!("{}", x.exp2().round()))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .light_line_style(TRANSPARENT)
        .draw()?;
    for s in series {
        let points: Vec<(f64, f64)> = s.points.iter().map(|(c, r)| (c.log2(), *r)).collect();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, svg, rest @ ..] = args.as_slice() else {
        return Err("usage: benchchart BENCH.md OUT.svg [OUT.csv]".into());
    };
    let text = std::fs::read_to_string(input).map_err(|e| format!("{input}: {e}"))?;
    let series = series(&text)?;
    draw(&series, svg)?;
    if let Some(path) = rest.first() {
        std::fs::write(path, csv(&series))?;
    }
    eprintln!("wrote {svg} ({} series)", series.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "## Send throughput (POST /messages, messages/s)\n\n\
        | clients | spread: gateway | pgbench INSERT | ratio | hot channel: gateway | ÷ single-client INSERT |\n\
        |---:|---:|---:|---:|---:|---:|\n\
        | 1 | 1341 | 4832 | 0.28 | 1350 | 0.27 |\n\
        | 64 | 13714 | 19446 | 0.71 | 15719 | 3.09 |\n\nafter\n";

    #[test]
    fn reads_the_columns_by_name() {
        let drawn = series(RUN).unwrap();
        assert_eq!(drawn.len(), 3, "no plain SQL table in this run");
        assert_eq!(drawn[0].points, [(1.0, 1341.0), (64.0, 13714.0)]);
        assert_eq!(drawn[1].points, [(1.0, 1350.0), (64.0, 15719.0)]);
        assert_eq!(drawn[2].points, [(1.0, 4832.0), (64.0, 19446.0)]);
        assert!(csv(&drawn).contains("\"pgbench INSERT (same rows, same run)\",64,19446\n"));
        assert!(series("no tables").is_err());
    }
}
