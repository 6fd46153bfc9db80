"""A handler of your own: the seed application's SampleHandler, for Cronlet."""

from cronlet.sdk import TaskContext, TaskHandler, TaskResult


class SampleHandler(TaskHandler):
    def execute(self, context: TaskContext) -> TaskResult:
        batch = int(context.parameters.get("batchSize", 10))
        source = context.parameters.get("source", "default")
        context.logger.info("processing %s rows from %s (attempt %s)", batch, source, context.attempt)
        processed = sum(1 for _ in range(batch))  # stand-in for real work
        return TaskResult.success(f"processed {processed} rows from {source}", data={"rows": processed})
