"""What pipeline_magics knows about Spark itself: its versions and the jars each one needs."""
