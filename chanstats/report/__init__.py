"""What a run hands back: the Result, its files, the human summary, exports, comparisons and plots."""
