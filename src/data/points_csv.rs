//! Reading a point cloud from a CSV file: one point per row, one coordinate per column.

use super::error::{DataError, Result};
use super::points::Points;
use crate::csv_table;
use std::path::Path;

/// Reads points from a CSV file; see [`parse_points_csv`] for the format.
pub fn read_points_csv(path: &Path) -> Result<Points> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_points_csv(&text, path)
}

/// Parses CSV text into points. `source` names the text in errors.
///
/// The format is [`crate::csv_table`]'s: comma-separated numbers, one point per line, every
/// line with the same number of cells (at least one). The first line may instead be a header of
/// names, none of which is a number. Blank lines and lines starting with `#` are skipped; cells
/// are trimmed, and lose surrounding double quotes. Every value must be a finite number (and
/// finite as a 32-bit float). Errors give the line number (counting every line of the file,
/// from 1) and the column.
pub fn parse_points_csv(text: &str, source: &Path) -> Result<Points> {
    let bad = |m: String| DataError::bad_file(source, m);
    let table = csv_table::parse(text).map_err(|e| bad(e.to_string()))?;
    if table.is_empty() {
        return Err(bad(
            "the file has no data; expected comma-separated numbers, one point per line".into(),
        ));
    }
    if table.rows.is_empty() {
        return Err(bad(format!(
            "line {} is a header but no data rows follow; expected one point per line",
            table.first_line
        )));
    }
    let mut data = Vec::with_capacity(table.rows.len() * table.width);
    for row in &table.rows {
        for (j, &v) in row.values.iter().enumerate() {
            let v32 = v as f32;
            if !v32.is_finite() {
                return Err(bad(format!(
                    "line {}, column {}: {v:e} is not a finite 32-bit float; remove or fix the row",
                    row.line,
                    j + 1
                )));
            }
            data.push(v32);
        }
    }
    Points::with_names(data, table.rows.len(), table.width, table.names())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Points> {
        parse_points_csv(text, Path::new("p.csv"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn csv_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pts.csv");
        let p = Points::new(vec![0.5, -1.25, 3.0, 1e-3, -7.0, 2.5e4], 3, 2).unwrap();
        let mut text = String::from("a,b\n");
        for i in 0..p.n {
            let r = p.row(i).unwrap();
            text += &format!("{},{}\n", r[0], r[1]);
        }
        std::fs::write(&path, text).unwrap();
        let q = read_points_csv(&path).unwrap();
        assert_eq!(q.data, p.data);
        assert_eq!(
            (q.n, q.dim, q.names.clone()),
            (3, 2, vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn headerless_one_dimensional_and_comment_lines() {
        let p = parse("\u{feff}# made by hand\n1\n\n2.5\r\n-3\n").unwrap();
        assert_eq!((p.n, p.dim, p.data.clone()), (3, 1, vec![1.0, 2.5, -3.0]));
        assert_eq!(p.names, vec!["x1"]);
        let q = parse("\"x\", \"y\", \"z\"\n1,2,3\n").unwrap();
        assert_eq!(q.names, vec!["x", "y", "z"]);
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let e = err("x,y\n1,2\n3\n");
        assert!(
            e.contains("p.csv") && e.contains("line 3: 1 cells, but the header has 2 (line 1)"),
            "{e}"
        );
    }

    #[test]
    fn non_numeric_cells_name_line_and_column() {
        let e = err("1,2\n3,abc\n");
        assert!(
            e.contains("line 2, column 2: 'abc' is not a finite number"),
            "{e}"
        );
        let e = err("1,x\n");
        assert!(
            e.contains("line 1, column 2: 'x'") && e.contains("header"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_values_are_errors() {
        for v in ["nan", "inf", "-inf", "1e39"] {
            let e = err(&format!("a,b\n1,2\n3,{v}\n"));
            assert!(
                e.contains("line 3, column 2") && e.contains("finite"),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn empty_files_and_header_only_files_are_errors() {
        assert!(err("").contains("no data"));
        assert!(err("\n  \n# only a comment\n").contains("no data"));
        let e = err("x,y\n");
        assert!(e.contains("header but no data rows"), "{e}");
        let e = err("x,,z\n1,2,3\n");
        assert!(e.contains("empty name"), "{e}");
    }
}
