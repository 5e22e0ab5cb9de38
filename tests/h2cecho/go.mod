module pylon/tests/h2cecho

go 1.24
