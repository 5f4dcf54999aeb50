"""Labelled text data: read inputs, load built-in and user datasets, encode labels, split, and check the splits.

One module per job: `readers` (files and stdin to DataFrames, whole or streamed; the formats and the row
rule), `columns` (which column holds texts and labels), `labels` (labels are names), `builtin` (the
bundled datasets), `dataset` (TextDataset), `loading` (load_dataset), `splits` and `checks`.
"""
from bertkit.data.builtin import BUILTIN_DATASETS, BuiltinDataset
from bertkit.data.checks import check_splits, looks_sorted_by_label
from bertkit.data.columns import LABEL_COLUMNS, TEXT_COLUMNS, pick_column, text_column
from bertkit.data.dataset import TextDataset
from bertkit.data.labels import class_order, label_name
from bertkit.data.loading import list_datasets, load_dataset
from bertkit.data.readers import (COMPRESSIONS, INPUT_FORMATS, SHARD_ROWS, formats_help, input_files, input_format,
                                  is_input_file, iter_table, read_chunks, read_inputs, read_table,
                                  table_columns)
from bertkit.data.splits import stratified_split, train_val_test_split

__all__ = [
    "BUILTIN_DATASETS", "BuiltinDataset", "COMPRESSIONS", "INPUT_FORMATS", "LABEL_COLUMNS", "SHARD_ROWS", "TEXT_COLUMNS",
    "TextDataset", "check_splits", "class_order", "formats_help", "input_files", "input_format", "is_input_file", "iter_table", "label_name",
    "list_datasets", "load_dataset", "looks_sorted_by_label", "pick_column", "read_chunks", "read_inputs", "read_table",
    "stratified_split", "table_columns", "text_column", "train_val_test_split",
]
