//! The one reader for numeric CSV tables (point clouds, labelled data sets): text in, column names
//! and rows of finite `f64` out, with the line (and column) of the first problem in every error.
//!
//! A leaf module: it imports nothing from the crate, so `data` and `target` (the lowest level of
//! the dependency order) both use it. The cells are split by the `csv` crate; the rules on top:
//!
//! - A UTF-8 byte-order mark is dropped. Blank lines and lines whose first non-blank character is
//!   `#` are skipped. Line numbers count every line of the text, from 1.
//! - Cells are trimmed, and lose one pair of surrounding double quotes (`"x"` and ` "x" ` alike).
//! - The first row is a header when none of its cells is a number, data when all of them are;
//!   a first row with both is an error that names the first cell that is not a number. Every
//!   header name must be non-empty.
//! - Every row has as many cells as the first; every data cell is a finite number.
//!
//! What a table must hold beyond that (how many columns or rows, labels) is the caller's check.

use thiserror::Error;

/// A numeric table read by [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header's column names, or `None` when the first row is data.
    pub header: Option<Vec<String>>,
    /// The line of the header or, without one, of the first data row; 0 for a text with no rows.
    pub first_line: usize,
    /// The number of columns (0 for a text with no rows).
    pub width: usize,
    /// The data rows, each with `width` values.
    pub rows: Vec<Row>,
}

/// One data row of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its line in the text (from 1).
    pub line: usize,
    /// Its values, all finite.
    pub values: Vec<f64>,
}

impl Table {
    /// True when the text held no row at all (not even a header): empty, blank or comments only.
    pub fn is_empty(&self) -> bool {
        self.width == 0
    }

    /// The column names: the header's, or `x1..x{width}` without one.
    pub fn names(&self) -> Vec<String> {
        match &self.header {
            Some(names) => names.clone(),
            None => (1..=self.width).map(|j| format!("x{j}")).collect(),
        }
    }
}

/// A CSV text that is not a numeric table: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}{}: {message}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct CsvError {
    /// The line (from 1, counting every line of the text).
    pub line: usize,
    /// The column (from 1), where one cell is to blame.
    pub column: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Parses CSV text into a numeric [`Table`]; see the module documentation for the rules.
pub fn parse(text: &str) -> Result<Table, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut table = Table {
        header: None,
        first_line: 0,
        width: 0,
        rows: Vec::new(),
    };
    let mut lines = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    loop {
        let read = reader.read_record(&mut record);
        let end = lines.line_at(reader.position().byte() as usize);
        let read = read.map_err(|e| CsvError {
            line: end,
            column: None,
            message: format!("not readable as CSV: {e}"),
        })?;
        if !read {
            break;
        }
        let cells: Vec<&str> = record.iter().map(clean).collect();
        // The csv crate skips only empty lines and lines that start with '#': skip blank lines
        // and indented comments here.
        if (cells.len() == 1 && cells[0].is_empty()) || cells[0].starts_with('#') {
            continue;
        }
        let line = end
            - record
                .iter()
                .map(|f| f.matches('\n').count())
                .sum::<usize>();
        if line != end {
            return Err(CsvError {
                line,
                column: None,
                message: "a quoted cell runs on over the end of the line; close its quote".into(),
            });
        }
        if table.width == 0 {
            table.first_line = line;
            table.width = cells.len();
            if let Some(names) = header(&cells, line)? {
                table.header = Some(names);
                continue;
            }
        }
        table.rows.push(data_row(&cells, line, &table)?);
    }
    Ok(table)
}

/// A cell trimmed and without one pair of surrounding double quotes.
fn clean(cell: &str) -> &str {
    let cell = cell.trim();
    match cell.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(inner) => inner.trim(),
        None => cell,
    }
}

/// The first row's names if it is a header, `None` if it is data, or an error if it mixes both.
fn header(cells: &[&str], line: usize) -> Result<Option<Vec<String>>, CsvError> {
    let is_number = |c: &&str| c.parse::<f64>().is_ok();
    if cells.iter().all(is_number) {
        return Ok(None);
    }
    if cells.iter().any(is_number) {
        let j = cells
            .iter()
            .position(|c| !is_number(c))
            .expect("one is not");
        return Err(CsvError {
            line,
            column: Some(j + 1),
            message: format!(
                "'{}' is not a number, but other cells of this first line are; a header must be \
                 all names and a data row all numbers",
                cells[j]
            ),
        });
    }
    if let Some(j) = cells.iter().position(|c| c.is_empty()) {
        return Err(CsvError {
            line,
            column: Some(j + 1),
            message: "empty name in the header; name every column".into(),
        });
    }
    Ok(Some(cells.iter().map(|c| c.to_string()).collect()))
}

/// One data row: as many cells as the first row, each a finite number.
fn data_row(cells: &[&str], line: usize, table: &Table) -> Result<Row, CsvError> {
    if cells.len() != table.width {
        return Err(CsvError {
            line,
            column: None,
            message: format!(
                "{} cells, but the {} has {} (line {}); every row needs the same number of columns",
                cells.len(),
                if table.header.is_some() {
                    "header"
                } else {
                    "first row"
                },
                table.width,
                table.first_line
            ),
        });
    }
    let values = cells
        .iter()
        .enumerate()
        .map(|(j, c)| {
            c.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| CsvError {
                    line,
                    column: Some(j + 1),
                    message: format!("'{c}' is not a finite number"),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Row { line, values })
}

/// Line numbers of byte offsets, for offsets that only move forward.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Bytes counted so far, and the newlines among them.
    at: usize,
    newlines: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            at: 0,
            newlines: 0,
        }
    }

    /// The line of the last byte before `end` (the reader's position just after a record and its
    /// line ending), or of `end` itself at the start of a line that has not ended yet.
    fn line_at(&mut self, end: usize) -> usize {
        let end = end.min(self.bytes.len());
        if end > self.at {
            self.newlines += self.bytes[self.at..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.at = end;
        }
        // A record ends with its line's '\n' (or "\r", the '\n' still to come), or at the end.
        let ended = end > 0 && self.bytes[end - 1] == b'\n';
        self.newlines + 1 - usize::from(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn header_blank_lines_comments_bom_quotes_and_line_numbers() {
        let t = parse("\u{feff}# made by hand\n\"a\", \"b\" ,c\n\n  \n  # indented\r\n1,2,3\r\n\n-4.5e1 , 5,\"6\"\n").unwrap();
        assert_eq!(t.header, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!((t.first_line, t.width), (2, 3));
        let rows: Vec<_> = t.rows.iter().map(|r| (r.line, r.values.clone())).collect();
        assert_eq!(rows, [(6, vec![1.0, 2.0, 3.0]), (8, vec![-45.0, 5.0, 6.0])]);
        let t = parse("1\n2\n3").unwrap();
        assert_eq!((t.header.is_none(), t.width, t.rows.len()), (true, 1, 3));
        assert_eq!(t.rows[2].line, 3);
        assert_eq!(t.names(), ["x1"]);
        for empty in ["", "\n \n", "# only a comment\n"] {
            assert!(parse(empty).unwrap().is_empty());
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            err("\n# c\n1,x\n"),
            "line 3, column 2: 'x' is not a number, but other cells of this first line are; a \
             header must be all names and a data row all numbers"
        );
        assert!(err("a,,c\n").starts_with("line 1, column 2: empty name in the header"));
        assert!(err("a,b\n1,2\n\n3\n").starts_with(
            "line 4: 1 cells, but the header has 2 (line 1); every row needs the same"
        ));
        assert!(err("1,2\n3\n").starts_with("line 2: 1 cells, but the first row has 2 (line 1)"));
        for v in ["x", "nan", "inf", "-inf", "1e309", ""] {
            assert_eq!(
                err(&format!("a,b\n1,2\r\n3,{v}\n")),
                format!("line 3, column 2: '{v}' is not a finite number"),
            );
        }
        assert!(err("a,b\n1,\"2\n3\",4\n").starts_with("line 2: a quoted cell runs on"));
    }
}
