"""What the tests share: real image files (:mod:`.files`), independent oracles (:mod:`.oracles`)
and runners of the installed ``chanstats`` command (:mod:`.cli`)."""
