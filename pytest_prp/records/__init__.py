"""What happened: the PRP record (one owner), heartbeats, progress lines, the batch result (its
collection, its JSON document, the terminal summary), prp-status (the view, the table, the
command) and the HTML report (its data and its page).
"""
