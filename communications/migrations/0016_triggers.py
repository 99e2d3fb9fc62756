# Trigger mailings (communications/services/triggers.py): the mailing's kind, its trigger, and
# a message's event or occasion, each answered once per (mailing, member).
#
# Cost on a large table: the new columns are added without a rewrite (NULL, or a constant
# default); message_once_per_recipient is dropped and built again with its narrower condition
# (a plain CREATE UNIQUE INDEX inside the migration's transaction, so writes to the message
# table wait while it builds), and the two new unique indexes are partial and start empty. On
# a live installation with millions of messages, build the new message_once_per_recipient
# CONCURRENTLY under another name first (`manage.py sqlmigrate communications 0016`), then
# swap the names and fake this migration.

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('communications', '0015_member_inbox'),
        ('loyalty', '0007_webhooks'),
        ('members', '0007_feedback'),
    ]

    operations = [
        migrations.CreateModel(
            name='Trigger',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_type', models.CharField(blank=True, help_text='An event type of the catalog (ORDER_PLACED) or an active custom one; blank for a date rule.', max_length=64)),
                ('date_rule', models.CharField(blank=True, choices=[('birthday', "On the member's birthday"), ('voucher_expiring', 'Days before a voucher expires'), ('days_since_last_purchase', 'Days since the last purchase')], help_text='Instead of an event type: a date the member has.', max_length=32)),
                ('days', models.PositiveSmallIntegerField(blank=True, help_text='For “days before a voucher expires” and “days since the last purchase”.', null=True)),
                ('send_hour', models.PositiveSmallIntegerField(default=10, help_text="Date rules: the hour of the member's local day the message is due.", validators=[django.core.validators.MaxValueValidator(23)])),
                ('conditions', models.JSONField(blank=True, default=list, help_text='Conditions on the event payload, all of which must hold, e.g. [{"path": "total", "op": "gte", "value": 50}]; ops: eq, ne, gt, gte, lt, lte, in (a list), exists (true or false); a path goes into nested objects with dots (“store.city”).')),
                ('delay', models.DurationField(blank=True, help_text='Event triggers: how long after the event the message is due, e.g. 02:00:00 for two hours. Blank: at once.', null=True)),
                ('cancel_on', models.JSONField(blank=True, default=list, help_text='Event types that cancel a message still waiting out the delay when one occurs for the same member within it, e.g. ["ORDER_REFUNDED"].')),
                ('cancel_match', models.CharField(blank=True, help_text='A payload path both events must have equal for the cancel to count, e.g. order_id. Blank: any cancelling event of the member counts.', max_length=100)),
                ('read_until', models.DateTimeField(blank=True, editable=False, null=True)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='message',
            name='message_once_per_recipient',
        ),
        migrations.AddField(
            model_name='mailing',
            name='kind',
            field=models.CharField(choices=[('regular', 'Regular (one send to an audience)'), ('trigger', 'Trigger (a message per matching event or date)')], db_default='regular', default='regular', editable=False, max_length=16),
        ),
        migrations.AddField(
            model_name='message',
            name='event',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='loyalty.event'),
        ),
        migrations.AddField(
            model_name='message',
            name='occasion',
            field=models.CharField(blank=True, db_default='', default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='message',
            name='skip_reason',
            field=models.CharField(blank=True, choices=[('inactive', 'Member blocked or erased'), ('no_address', 'No address for the channel'), ('suppressed', 'Address on the suppression list'), ('opted_out', 'No marketing consent on the channel'), ('not_subscribed_to_category', "Not subscribed to the mailing's category"), ('unconfirmed', 'Email address not confirmed (double opt-in)'), ('duplicate_address', 'Address shared with another recipient'), ('frequency_cap', 'Over the frequency cap'), ('quiet_hours_expired', 'Quiet hours lasted past the lifetime'), ('trigger_cancelled', 'Cancelled by a later event of the trigger')], max_length=32),
        ),
        migrations.AlterField(
            model_name='messagestatuschange',
            name='source',
            field=models.CharField(choices=[('dispatch', "Dispatch (the gateway's answer)"), ('receipt', 'Provider receipt'), ('tracking', "Engage's open and click tracking"), ('sweeper', 'Sweeper (lease or lifetime expired)'), ('compliance', 'Compliance (consent, frequency cap, quiet hours)'), ('operator', 'Marketer (pause, cancel)'), ('member', 'The member (read in the app or the account)'), ('trigger', 'Trigger (a later event cancelled the message)')], max_length=16),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.UniqueConstraint(condition=models.Q(('event__isnull', True), ('is_test', False), ('occasion', '')), fields=('mailing', 'member', 'channel'), name='message_once_per_recipient'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.UniqueConstraint(condition=models.Q(('event__isnull', False)), fields=('mailing', 'member', 'event'), name='message_once_per_event'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.UniqueConstraint(condition=models.Q(('occasion', ''), _negated=True), fields=('mailing', 'member', 'occasion'), name='message_once_per_occasion'),
        ),
        migrations.AddField(
            model_name='trigger',
            name='mailing',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='trigger', to='communications.mailing'),
        ),
        migrations.AddConstraint(
            model_name='trigger',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(models.Q(('event_type', ''), _negated=True), ('date_rule', '')), models.Q(('event_type', ''), models.Q(('date_rule', ''), _negated=True)), _connector='OR'), name='trigger_event_or_date'),
        ),
        migrations.CreateModel(
            name='TriggerMailing',
            fields=[
            ],
            options={
                'verbose_name': 'trigger mailing',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('communications.mailing',),
        ),
    ]
