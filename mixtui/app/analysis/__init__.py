"""What the routing of a conversation means: the statistics (numpy only), a trace file's
routing, the report in words (docs/analysis.md)."""
