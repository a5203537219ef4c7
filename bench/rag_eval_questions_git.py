# ruff: noqa: E501 -- one question per line reads better than wrapped prose.
"""Questions for bench/rag_eval.py on the Git manual (Debian's git-doc, /usr/share/doc/git/html).

Written from the pages, before any retrieval result was seen, the way people ask them (a goal, a
symptom, a half-remembered option), not copied from headings. Each lists the pages that answer
it: a hit on any of them counts. Pages are paths relative to /usr/share/doc/git/html.
"""

from __future__ import annotations

QUESTIONS: list[tuple[str, list[str]]] = [
    ("I committed to the wrong branch, how do I undo the last commit but keep my changes in the working tree?", ["git-reset.html", "gitfaq.html"]),
    ("I added a file to .gitignore but git still shows it as changed, how do I stop tracking it without deleting it?", ["git-rm.html", "gitignore.html", "gitfaq.html"]),
    ("find which commit introduced a bug by testing commits in a binary search", ["git-bisect.html", "git-bisect-lk2009.html", "user-manual.html"]),
    ("who last changed each line of a file and in which commit", ["git-blame.html", "git-annotate.html"]),
    ("put my uncommitted work aside for a moment so I can switch to another branch", ["git-stash.html"]),
    ("copy a single commit from another branch onto the one I'm on", ["git-cherry-pick.html"]),
    ("combine my last few commits into one before pushing them", ["git-rebase.html"]),
    ("undo a commit that was already pushed without rewriting the shared history", ["git-revert.html", "gitfaq.html", "howto/revert-a-faulty-merge.html"]),
    ("I ran reset --hard and lost commits, is there any way to get them back?", ["git-reflog.html", "user-manual.html", "git-fsck.html"]),
    ("stop git asking for my username and password every time I push over https", ["gitcredentials.html", "git-credential-store.html", "git-credential-cache.html", "gitfaq.html"]),
    ("work on two branches at once in separate folders from the same repository", ["git-worktree.html"]),
    ("clone a huge repository but only download the most recent history", ["git-clone.html", "technical/shallow.html", "technical/partial-clone.html"]),
    ("export the project at a given tag as a tar.gz without the .git folder", ["git-archive.html"]),
    ("search all tracked files for a string or regular expression", ["git-grep.html"]),
    ("remove all untracked files and build output from my working directory", ["git-clean.html"]),
    ("the server moved, how do I change the URL of origin?", ["git-remote.html"]),
    ("make a GPG-signed tag for a release", ["git-tag.html"]),
    ("show the history of a single file even across renames", ["git-log.html"]),
    ("run a script automatically to check the code before every commit is created", ["githooks.html", "git-hook.html"]),
    ("files show ^M at the end of lines when I diff on Windows", ["gitfaq.html", "gitattributes.html", "git-config.html"]),
    ("include another project's repository inside mine as a subdirectory", ["git-submodule.html", "gitsubmodules.html", "gitmodules.html", "howto/using-merge-subtree.html"]),
    ("only check out a few directories of a very large monorepo", ["git-sparse-checkout.html"]),
    ("what name and email should I configure for my commits?", ["gitfaq.html", "git-config.html", "gittutorial.html", "user-manual.html"]),
    ("open a graphical tool like meld to resolve merge conflicts", ["git-mergetool.html"]),
    ("I keep resolving the same conflict again and again when rebasing, can git remember how I fixed it?", ["git-rerere.html"]),
    ("turn my commits into patch files I can email to a mailing list", ["git-format-patch.html", "git-send-email.html"]),
    ("apply a series of patches someone sent me by email as commits", ["git-am.html"]),
    ("what is the difference between HEAD~2 and HEAD^2", ["gitrevisions.html", "git-rev-parse.html"]),
    ("get a version string like v1.4-12-gabcdef from the closest tag", ["git-describe.html"]),
    ("attach a comment to an existing commit without changing its hash", ["git-notes.html"]),
    ("my .git folder is huge, how do I clean up and compress the repository?", ["git-gc.html", "git-repack.html", "git-prune.html", "git-maintenance.html"]),
    ("I want to change a config file locally but never commit those changes", ["gitfaq.html", "git-update-index.html"]),
    ("the same author appears under several email addresses in the log, how do I merge them?", ["gitmailmap.html", "git-check-mailmap.html", "git-shortlog.html"]),
    ("compare two versions of my patch series after I rebased it", ["git-range-diff.html"]),
    ("check the repository for corrupt or missing objects", ["git-fsck.html", "howto/recover-corrupted-blob-object.html", "howto/recover-corrupted-object-harder.html"]),
    ("remove a file with a leaked password from every commit in history", ["git-filter-branch.html"]),
    ("host repositories over HTTP behind Apache so people can clone and push", ["git-http-backend.html", "howto/setup-git-server-over-http.html"]),
    ("git says I am in 'detached HEAD' state, what does that mean?", ["git-checkout.html", "git-switch.html", "gitglossary.html", "user-manual.html"]),
    ("throw away my local edits to one file and get back the committed version", ["git-restore.html", "git-checkout.html"]),
    ("which branches have already been merged into main so I can delete them?", ["git-branch.html"]),
]  # fmt: skip
