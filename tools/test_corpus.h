// tools/test_corpus.h — a few kilobytes of plain English prose, written for this project,
// on which the tiny test model's tokenizer is trained (tools/bpe_trainer.h).
#ifndef PREFIXD_TOOLS_TEST_CORPUS_H_
#define PREFIXD_TOOLS_TEST_CORPUS_H_

#include <string_view>

namespace prefixd {

// Paragraphs separated by blank lines; ASCII but for a few accented words and numbers.
std::string_view TestCorpus();

}  // namespace prefixd

#endif  // PREFIXD_TOOLS_TEST_CORPUS_H_
