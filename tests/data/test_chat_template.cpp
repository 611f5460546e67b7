// Named chat templates (data/chat_template.hpp): each rendering exactly, the "chat:NAME" form of a
// stage template, unknown names as one clear error, and — with the published Qwen3 tokenizer
// (tools/fetch-assets) — that the ChatML markers become Qwen3's single special tokens.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.hpp"
#include "data/bpe_hf_loader.hpp"
#include "data/chat_template.hpp"
#include "data/prompt_template.hpp"
#include "test_bpe_assets.hpp"

using namespace opd::data;

TEST(ChatTemplate, EachRenderingExactly) {
  const std::string p = "What is 2+2?";
  EXPECT_EQ(render_chat(chat_template("plain", "t"), p), p);
  EXPECT_EQ(render_chat(chat_template("qwen2.5", "t"), p),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(chat_template("qwen3", "t"), p),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(chat_template("qwen3-nothink", "t"), p),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(render_chat(chat_template("llama3", "t"), p),
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_STREQ(chat_template("qwen3", "t").end_of_turn, "<|im_end|>");
  EXPECT_STREQ(chat_template("llama3", "t").end_of_turn, "<|eot_id|>");
  EXPECT_EQ(chat_templates().size(), 5u);
}

TEST(ChatTemplate, StageTemplatesNameThemWithChatPrefix) {
  EXPECT_NO_THROW(validate_template("chat:qwen3", "stage.template"));
  EXPECT_EQ(apply_template("chat:qwen3", "hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_template("Q: {prompt}\nA: ", "hi"), "Q: hi\nA: ");  // plain templates unchanged
  try {
    validate_template("chat:qwen4", "job.toml: stage.distill.template");
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    const std::string what = e.what();
    EXPECT_NE(what.find("qwen4"), std::string::npos) << what;
    EXPECT_NE(what.find("stage.distill.template"), std::string::npos) << what;
    EXPECT_NE(what.find("qwen2.5, qwen3, qwen3-nothink, llama3"), std::string::npos) << what;
  }
}

TEST(ChatTemplate, Qwen3MarkersAreSingleSpecialTokens) {
  const char* kQwen3 = "tokenizer-qwen3/models/tokenizer.json";
  OPD_REQUIRE_ASSET(kQwen3);
  const BpeTokenizer tok(load_hf_tokenizer_json(opd::test::asset(kQwen3)));
  const std::vector<int32_t> ids = tok.encode(render_chat(chat_template("qwen3", "t"), "2+2?"));
  // <|im_start|> 151644 and <|im_end|> 151645 in Qwen3's added tokens.
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151644), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151645), 1);
  // Decoding writes the other special tokens back but drops EOS (<|im_end|> for Qwen3).
  EXPECT_EQ(tok.decode(ids), "<|im_start|>user\n2+2?\n<|im_start|>assistant\n");
}
