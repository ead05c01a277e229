"""`lighthouse-bench report`: one self-contained report from sweeps, profiles, quality and train folders.

The top of the house: it reads what every command wrote (bench, quality, train) and nothing imports it.
build: the content (headline, tables, charts, comparisons); document: its rendering to Markdown and HTML.
"""
