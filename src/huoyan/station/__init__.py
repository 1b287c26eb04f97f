"""The station: sources feed an asyncio pipeline that inspects, decides and hands records to sinks."""
