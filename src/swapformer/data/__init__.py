"""Data layer: tokenizers, text and parallel corpora, synthetic tasks and Lightning data modules."""

from __future__ import annotations

from swapformer.data.datamodules import CausalLMDataModule, Seq2SeqDataModule, TokenizedDataModule
from swapformer.data.errors import DataError
from swapformer.data.pairs import read_parallel_files, read_tsv, split_pairs
from swapformer.data.resumable import ResumableDataLoader
from swapformer.data.samplers import EpochShuffleSampler, RandomOffsetSampler
from swapformer.data.seq2seq_datasets import PairCollator, PairDataset, encode_pairs, encode_sources
from swapformer.data.synthetic import TASKS, generate_task
from swapformer.data.text import TextSplit, load_text_split, read_text_corpus, split_text, stdlib_text_split
from swapformer.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    UNK_ID,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    HFTokenizer,
    Tokenizer,
    build_tokenizer,
    check_vocab,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "TASKS",
    "TOKENIZER_KINDS",
    "UNK_ID",
    "BPETokenizer",
    "ByteTokenizer",
    "CausalLMDataModule",
    "CharTokenizer",
    "DataError",
    "EpochShuffleSampler",
    "HFTokenizer",
    "PairCollator",
    "PairDataset",
    "RandomOffsetSampler",
    "ResumableDataLoader",
    "Seq2SeqDataModule",
    "TextSplit",
    "TokenizedDataModule",
    "Tokenizer",
    "build_tokenizer",
    "check_vocab",
    "encode_pairs",
    "encode_sources",
    "generate_task",
    "load_text_split",
    "read_parallel_files",
    "read_text_corpus",
    "read_tsv",
    "split_pairs",
    "split_text",
    "stdlib_text_split",
]
