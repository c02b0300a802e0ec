from fewshot.cli.main import main

raise SystemExit(main())
