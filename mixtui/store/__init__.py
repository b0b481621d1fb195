"""What is on disk: the Hugging Face cache layout, the files a repository records, the shard
index, and the record of bad files."""
