"""Adapters for the frameworks people build retrieval with: LangChain (`integrations.langchain`) and LlamaIndex
(`integrations.llama_index`). Each is imported only when used, and needs its framework installed
(`pip install fastembed_rt[langchain]` / `[llama-index]`)."""
