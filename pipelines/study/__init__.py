"""Layer 4: studies over many runs: the experiment grid, its report (CSV, statistics, tables,
plots) and the demo. May import every layer below."""
