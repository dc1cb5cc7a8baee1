//! Human output: aligned tables on stdout, progress bars on stderr. Machine output (`-o json`)
//! is plain JSON on stdout and never passes through here.

use std::io::{IsTerminal, Write};

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `[=====>    ]` for `done` of `total`.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    let mut s = String::with_capacity(width + 2);
    s.push('[');
    for i in 0..width {
        s.push(if i < filled {
            '='
        } else if i == filled {
            '>'
        } else {
            ' '
        });
    }
    s.push(']');
    s
}

/// Progress lines on stderr: redrawn in place on a terminal, one line per change otherwise
/// (so logs stay readable).
pub struct Progress {
    tty: bool,
    /// Lines drawn last time, to move the cursor back over them.
    drawn: usize,
    last: Vec<String>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            drawn: 0,
            last: Vec::new(),
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    pub fn draw(&mut self, lines: Vec<String>) {
        if lines == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(err, "\x1b[{}A", self.drawn);
            }
            for l in &lines {
                let _ = writeln!(err, "\r\x1b[2K{l}");
            }
            self.drawn = lines.len();
        } else {
            for (i, l) in lines.iter().enumerate() {
                if self.last.get(i) != Some(l) {
                    let _ = writeln!(err, "{l}");
                }
            }
        }
        let _ = err.flush();
        self.last = lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(bar(0, 10, 4), "[>   ]");
        assert_eq!(bar(5, 10, 4), "[==> ]");
        assert_eq!(bar(10, 10, 4), "[====]");
        assert_eq!(bar(0, 0, 2), "[==]");
    }
}
