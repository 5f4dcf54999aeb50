"""benchmarks/pretrain_text.py: the dictionary parsers keep running text only (made-up entries in the real formats),
the table readers find their texts, and corpora are written a document per line, duplicates and exclusions counted."""
from __future__ import annotations

import gzip

import pytest

from bertkit import bench
from bertkit.pretrain import read_documents


@pytest.fixture(scope="module")
def pt():
    return bench.load_script(bench.benchmarks_dir(), "pretrain_text.py")


# A made-up entry in GCIDE's dictd layout: two spellings, an etymology with nested brackets and accent codes, labels,
# source tags, a quotation whose author wraps onto the next line, a note, a synonym list and a phrase.
ENTRY = r"""Glimmerous \Glim"mer*ous\, Glimmrous \Glim"rous\, a. [OE. glimer, fr. AS. gl[ae]m; cf.
   G. glimmer [Obs.] light.] (Opt.)
   1. Shining faintly; flickering, as a candle in a draught.
      [Obs.]
      [1913 Webster]

            The glimmerous lamp burned low beside the sleeping
            child.                                   --Sir
                                                  J. Doe.
      [1913 Webster]

   2. (Fig.) Hinting at something half seen; as, a glimmerous
      hope. [R.] --Roe.
      [PJC] Glimmerousness

   Note: The word is used chiefly of light seen through r[e^]eds
         or mist.
         [1913 Webster]

   Syn: Faint; dim; flickering.

   {Glimmerous fish} (Zool.), a small fish whose scales shine
      faintly at dusk.

   Ok.
"""


def test_gcide_entries_give_definitions_quotations_and_notes_only(pt):
    assert list(pt.gcide_paragraphs(ENTRY)) == [
        "Shining faintly; flickering, as a candle in a draught.",
        "The glimmerous lamp burned low beside the sleeping child.",
        "Hinting at something half seen; as, a glimmerous hope.",
        "The word is used chiefly of light seen through reeds or mist.",
        "Glimmerous fish (Zool.), a small fish whose scales shine faintly at dusk.",
    ]
    unnumbered = "Blent \\Blent\\, n. [See {Blend}.]\n   A mixture of two things; a blend.\n   [1913 Webster]\n"
    assert list(pt.gcide_paragraphs(unnumbered)) == ["A mixture of two things; a blend."]


def test_dictd_entries_are_read_once_each_through_the_base64_index(pt, tmp_path):
    body = b"00-database-short\n   A test dictionary\n" + b"Alpha \\Al\"pha\\, n.\n   The first one here.\n" + b"x"
    first = len(b"00-database-short\n   A test dictionary\n")
    alpha = len(b"Alpha \\Al\"pha\\, n.\n   The first one here.\n")

    def b64(n: int) -> str:
        digits = ""
        while True:
            digits = pt._BASE64[n % 64] + digits
            n //= 64
            if not n:
                return digits

    with gzip.open(tmp_path / "t.dict.dz", "wb") as f:
        f.write(body)
    (tmp_path / "t.index").write_text(f"00-database-short\t{b64(0)}\t{b64(first)}\n"
                                      f"Alpha\t{b64(first)}\t{b64(alpha)}\nAlphas\t{b64(first)}\t{b64(alpha)}\n")
    assert pt._base64_number(b64(4095)) == 4095
    entries = list(pt.dictd_entries(tmp_path / "t.index", tmp_path / "t.dict.dz"))
    assert entries == ["Alpha \\Al\"pha\\, n.\n   The first one here.\n"]
    assert list(pt.gcide_paragraphs(entries[0])) == ["The first one here."]


def test_wordnet_glosses_split_into_definition_and_examples(pt):
    licence = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    synset = ('02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member of the genus Canis that has '
              'been domesticated by man; "the dog barked all night"; "dogs were his only friends"  \n')
    plain = "00001930 03 n 01 physical_entity 0 000 | an entity that has physical existence  \n"
    assert pt.wordnet_gloss(licence) == []
    assert pt.wordnet_gloss(synset) == ["a member of the genus Canis that has been domesticated by man",
                                        "the dog barked all night", "dogs were his only friends"]
    assert pt.wordnet_gloss(plain) == ["an entity that has physical existence"]


def test_corpora_are_a_document_per_line_with_duplicates_and_exclusions_counted(pt, tmp_path):
    written = pt.write_corpus(["one\ntext", "two", "  ", "one  text", "held out", None, "three"], tmp_path / "c.txt",
                              exclude=["held\nout"])
    assert (written["documents"], written["duplicates_dropped"], written["excluded"]) == (3, 1, 1)
    assert list(read_documents(tmp_path / "c.txt")) == ["one text", "two", "three"]
    assert written["characters"] == len("one text") + len("two") + len("three")


def test_the_table_sources_find_their_texts(pt):
    snippets = list(pt.rotten_tomatoes())
    assert len(snippets) == 7403 + 5405 and all(isinstance(s, str) for s in snippets)  # fresh + rotten, no plots
    assert len(list(pt.rotten_tomatoes_plots())) == 1097
    assert len(list(pt.debates())) == 1122 and len(list(pt.guardian())) == 4080
